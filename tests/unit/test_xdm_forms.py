"""Both XDM forms, rescued fields, wrong types and broken bytes, through the JVM normaliser."""

import json

import pytest

from pipelines.ingest.landing import FILE_ERROR, RAW, SOURCE_FILE
from pipelines.ingest.parse import PARSE_ERROR, POSITION, RESCUED, parse_records, register_normaliser
from pipelines.xdm.schema import EXPERIENCE_EVENT, INDIVIDUAL_PROFILE

ALIASES = {"4": "ECID"}

EXPORT_FORM = {
    "_id": "ev-1",
    "timestamp": "2026-02-01T10:00:00Z",
    "eventType": "commerce.purchases",
    "identityMap": {
        "ECID": [{"id": "e1", "authenticatedState": "ambiguous"}, {"id": "e2"}],
        "CRMID": [{"id": "c1", "authenticatedState": "authenticated"}],
    },
    "commerce": {
        "purchases": {"value": 1},
        "order": {"purchaseID": "o-1", "priceTotal": 59.5, "currencyCode": "EUR",
                  "payments": [{"paymentType": "credit_card", "paymentAmount": 59.5, "currencyCode": "EUR"}]},
    },
    "productListItems": [{"SKU": "S-1", "quantity": 2, "priceTotal": 59.5,
                          "productCategories": [{"categoryID": "C1", "name": "Outdoor"}],
                          "selectedOptions": [{"attribute": "size", "value": "M"}]}],
    "web": {"webPageDetails": {"name": "checkout", "pageViews": {"value": 0}},
            "webReferrer": {"URL": "https://search.example.com", "type": "search_engine"}},
    "channel": {"_id": "https://ns.adobe.com/xdm/channels/web", "_type": "https://ns.adobe.com/xdm/channel-types/web"},
    "placeContext": {"geo": {"countryCode": "DE", "city": "Berlin"}},
}

JSONLD_FORM = {
    "@context": {"xdm": "https://ns.adobe.com/xdm/"},
    "@id": "ev-1",
    "xdm:timestamp": "2026-02-01T10:00:00Z",
    "xdm:eventType": "commerce.purchases",
    "xdm:identityMap": {
        "https://data.adobe.io/entities/namespace/4": [
            {"xdm:id": "e1", "xdm:authenticatedState": "ambiguous"}, {"xdm:id": "e2"}],
        "CRMID": [{"xdm:id": "c1", "xdm:authenticatedState": "authenticated"}],
    },
    "xdm:commerce": {
        "xdm:purchases": {"xdm:value": 1},
        "xdm:order": {"xdm:purchaseID": "o-1", "xdm:priceTotal": 59.5, "xdm:currencyCode": "EUR",
                      "xdm:payments": [{"xdm:paymentType": "credit_card", "xdm:paymentAmount": 59.5,
                                        "xdm:currencyCode": "EUR"}]},
    },
    "xdm:productListItems": [{"xdm:SKU": "S-1", "xdm:quantity": 2, "xdm:priceTotal": 59.5,
                              "xdm:productCategories": [{"xdm:categoryID": "C1", "xdm:name": "Outdoor"}],
                              "xdm:selectedOptions": [{"xdm:attribute": "size", "xdm:value": "M"}]}],
    "xdm:web": {"xdm:webPageDetails": {"xdm:name": "checkout", "xdm:pageViews": {"xdm:value": 0}},
                "xdm:webReferrer": {"xdm:URL": "https://search.example.com", "xdm:type": "search_engine"}},
    "xdm:channel": {"@id": "https://ns.adobe.com/xdm/channels/web",
                    "@type": "https://ns.adobe.com/xdm/channel-types/web"},
    "xdm:placeContext": {"xdm:geo": {"xdm:countryCode": "DE", "xdm:city": "Berlin"}},
}


@pytest.fixture(autouse=True)
def _normaliser(spark):
    register_normaliser(spark)


def _parse(spark, records, schema=EXPERIENCE_EVENT):
    def raw(record):
        if isinstance(record, bytes):
            return bytearray(record)
        return bytearray((record if isinstance(record, str) else json.dumps(record)).encode())
    rows = [(raw(r), "file:///landing/f.json", None) for r in records]
    frame = spark.createDataFrame(rows, f"{RAW} binary, {SOURCE_FILE} string, {FILE_ERROR} string")
    return frame.transform(parse_records(schema, ALIASES)).drop(RAW, POSITION).collect()


def test_the_same_event_in_either_form_lands_as_the_same_row(spark):
    export_row, jsonld_row = _parse(spark, [EXPORT_FORM, JSONLD_FORM])
    assert export_row.asDict(recursive=True) == jsonld_row.asDict(recursive=True)
    row = export_row.asDict(recursive=True)
    assert row[PARSE_ERROR] is None and row[RESCUED] is None
    assert [i["id"] for i in row["identityMap"]["ECID"]] == ["e1", "e2"]
    assert row["commerce"]["order"]["payments"][0]["paymentAmount"] == 59.5
    assert row["productListItems"][0]["selectedOptions"][0] == {"attribute": "size", "value": "M"}
    assert row["channel"]["_type"] == EXPORT_FORM["channel"]["_type"]


def test_unknown_fields_are_kept_as_rescued_data_at_their_path(spark):
    record = {**EXPORT_FORM, "_acme": {"loyalty": {"tier": "gold"}},
              "commerce": {**EXPORT_FORM["commerce"], "giftWrap": True},
              "productListItems": [{**EXPORT_FORM["productListItems"][0], "color": "red"}]}
    (row,) = _parse(spark, [record])
    assert row[PARSE_ERROR] is None
    assert json.loads(row[RESCUED]) == {"_acme": {"loyalty": {"tier": "gold"}}, "commerce.giftWrap": True,
                                        "productListItems[0].color": "red"}
    assert row["commerce"]["order"]["priceTotal"] == 59.5


def test_a_field_of_the_wrong_type_is_named_with_its_path(spark):
    record = {**EXPORT_FORM, "productListItems": [{"SKU": "S-1"}, {"SKU": "S-2", "quantity": "two"}]}
    (row,) = _parse(spark, [record])
    assert row[PARSE_ERROR] == "wrong type: productListItems[1].quantity must be an integer, got a string"


def test_lenient_where_nothing_is_lost_numeric_ids_and_whole_doubles(spark):
    record = {**EXPORT_FORM, "productListItems": [{"SKU": 12345, "quantity": 2.0}]}
    (row,) = _parse(spark, [record])
    assert row[PARSE_ERROR] is None
    assert (row["productListItems"][0]["SKU"], row["productListItems"][0]["quantity"]) == ("12345", 2)


@pytest.mark.parametrize("raw, reason", [
    (b'{"_id": "x", "web": {"webPageDetails": {"name": "caf\xe9"}}}', "not UTF-8: invalid byte sequence in the record"),
    ('{"_id": "x", "timestamp": "2026-0', "not JSON: Unexpected end-of-input"),
    ('[{"_id": "x"}]', "not a JSON object: an array"),
    ('"just text"', "not a JSON object: a string"),
    ('{"_id": "x"} trailing', "not JSON: Unrecognized token 'trailing'"),
    ('{"_id": "x"} {"_id": "y"}', "not JSON: Trailing token"),
])
def test_broken_records_get_a_reason_and_never_a_row(spark, raw, reason):
    (row,) = _parse(spark, [raw])
    assert row[PARSE_ERROR].startswith(reason)
    assert row["_id"] is None


def test_a_byte_order_mark_is_not_an_error(spark):
    (row,) = _parse(spark, [b"\xef\xbb\xbf" + json.dumps(EXPORT_FORM).encode()])
    assert row[PARSE_ERROR] is None and row["_id"] == "ev-1"


def test_profiles_in_json_ld_form_with_the_person_field_groups(spark):
    profile = {"@id": "p-1", "xdm:identityMap": {"Email": [{"xdm:id": "a@x.com", "xdm:primary": True}]},
               "xdm:person": {"xdm:name": {"xdm:firstName": "Ada"}, "xdm:birthYear": 1990},
               "xdm:mobilePhone": {"xdm:number": "+49 30 1234"},
               "xdm:workAddress": {"xdm:city": "Hamburg"}}
    (row,) = _parse(spark, [profile], INDIVIDUAL_PROFILE)
    assert row[PARSE_ERROR] is None
    assert (row["_id"], row["person"]["name"]["firstName"], row["person"]["birthYear"]) == ("p-1", "Ada", 1990)
    assert (row["mobilePhone"]["number"], row["workAddress"]["city"]) == ("+49 30 1234", "Hamburg")
    assert row["identityMap"]["Email"][0]["primary"] is True
