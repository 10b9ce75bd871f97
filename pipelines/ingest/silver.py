"""Bronze -> silver: one flat commerce/web fact row per event, one merged row per person."""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame


def _measure(column: str) -> Column:
    return F.coalesce(F.col(column), F.lit(0.0))


def _text(column: Column) -> Column:
    """Trimmed text, null when empty."""
    trimmed = F.trim(column)
    return F.when(trimmed != "", trimmed)


def _counter(measure: str, event_type: str) -> Column:
    """An XDM counter: its value, or 1 for an event of its type."""
    return F.greatest(_measure(measure), (F.col("eventType") == event_type).cast("double"))


def flatten_events(events: DataFrame) -> DataFrame:
    """Events with `person_id` -> the facts features are built from.

    A purchase is an event of type `commerce.purchases` or with `commerce.purchases.value`
    above zero; its revenue is `commerce.order.priceTotal`, else the sum of its items. A
    product's category is XDM's `categoryName`, else the `name` some exports carry. A web
    event's content is kept three ways, for content affinity to choose from: its site
    section (`siteSection`, else `primarySiteSection`), its page name, and the first
    segment of its URL's path.
    """
    item_total = F.aggregate(
        F.coalesce(F.col("productListItems"), F.array()), F.lit(0.0),
        lambda acc, item: acc + F.coalesce(item["priceTotal"], F.lit(0.0)))
    is_purchase = (F.col("eventType") == "commerce.purchases") | (_measure("commerce.purchases.value") > 0)
    is_page_view = ((F.col("eventType") == "web.webpagedetails.pageViews")
                    | (_measure("web.webPageDetails.pageViews.value") > 0))
    categories = F.array_distinct(F.filter(F.flatten(F.transform(
        F.coalesce(F.col("productListItems"), F.array()),
        lambda item: F.transform(F.coalesce(item["productCategories"], F.array()),
                                 lambda c: F.coalesce(c["categoryName"], c["name"])))),
        lambda name: name.isNotNull()))
    skus = F.array_distinct(F.filter(F.transform(F.coalesce(F.col("productListItems"), F.array()),
                                                 lambda item: _text(item["SKU"])),
                                     lambda sku: sku.isNotNull()))
    page = "web.webPageDetails"
    url_section = F.regexp_extract(F.col(f"{page}.URL"), r"^(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?/+([^/?#]+)", 1)
    return events.select(
        "person_id",
        F.col("_id").alias("event_id"),
        F.col("timestamp").alias("event_time"),
        "event_date",
        F.col("eventType").alias("event_type"),
        is_purchase.alias("is_purchase"),
        F.when(is_purchase, F.coalesce(F.col("commerce.order.priceTotal"), item_total))
         .otherwise(F.lit(0.0)).alias("revenue"),
        F.col("commerce.order.currencyCode").alias("currency"),
        _counter("commerce.productViews.value", "commerce.productViews").alias("product_views"),
        _counter("commerce.productListAdds.value", "commerce.productListAdds").alias("cart_adds"),
        is_page_view.cast("double").alias("page_views"),
        categories.alias("categories"),
        skus.alias("skus"),
        _counter("commerce.productListRemovals.value", "commerce.productListRemovals").alias("cart_removals"),
        F.coalesce(_text(F.col(f"{page}.siteSection")), _text(F.col(f"{page}.primarySiteSection")))
         .alias("site_section"),
        _text(F.col(f"{page}.name")).alias("page_name"),
        _text(url_section).alias("url_section"),
    )


# silver/profiles columns and where each comes from in an Individual Profile fragment.
PROFILE_ATTRIBUTES = {
    "first_name": "person.name.firstName",
    "middle_name": "person.name.middleName",
    "last_name": "person.name.lastName",
    "full_name": "person.name.fullName",
    "birth_date": "person.birthDate",
    "birth_year": "person.birthYear",
    "gender": "person.gender",
    "email": "personalEmail.address",
    "email_status": "personalEmail.status",
    "mobile_phone": "mobilePhone.number",
    "home_street": "homeAddress.street1",
    "home_city": "homeAddress.city",
    "home_postal_code": "homeAddress.postalCode",
    "home_state_province": "homeAddress.stateProvince",
    "home_country_code": "homeAddress.countryCode",
    "work_city": "workAddress.city",
    "work_country_code": "workAddress.countryCode",
}


def merge_profile_fragments(fragments: DataFrame) -> DataFrame:
    """Profile fragments with `person_id` -> one row per person, attribute by attribute the
    most recent non-null value (Platform's timestamp-ordered merge policy).

    A fragment's time is `updated_at` (its `_repo.lastModifiedDate`), else the day it was
    ingested; ties go to the larger `_id`, so the result never depends on arrival order.
    """
    when = F.struct(F.coalesce(F.col("updated_at"), F.col("_ingest_run_date").cast("timestamp")).alias("at"),
                    F.col("_id"))
    merged = [F.max_by(F.col(path), F.when(F.col(path).isNotNull(), when)).alias(name)
              for name, path in PROFILE_ATTRIBUTES.items()]
    return (fragments.where(F.col("person_id").isNotNull())
            .groupBy("person_id")
            .agg(*merged, F.count(F.lit(1)).alias("fragments"), F.max(when["at"]).alias("updated_at")))
