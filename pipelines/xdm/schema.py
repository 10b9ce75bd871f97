"""Explicit Spark schemas for XDM ExperienceEvents and Individual Profiles (export form).

Fields follow the XDM field groups Adobe Experience Platform exports: `_id`,
`timestamp`, `eventType`, `identityMap`, `commerce`, `productListItems`, `web`;
profiles carry `person`, `personalEmail`, `homeAddress` and `_repo`. Reading with an
explicit schema keeps ingest fast (no inference pass) and makes a wrong type visible.
`timestamp` is read as a string and parsed afterwards, so a bad value can be named.
"""

from pyspark.sql import types as T

CORRUPT_RECORD = "_corrupt_record"


def _struct(**fields: T.DataType) -> T.StructType:
    return T.StructType([T.StructField(name, dtype) for name, dtype in fields.items()])


MEASURE = _struct(value=T.DoubleType())

IDENTITY_ITEM = _struct(id=T.StringType(), primary=T.BooleanType(), authenticatedState=T.StringType())
IDENTITY_MAP = T.MapType(T.StringType(), T.ArrayType(IDENTITY_ITEM))

PRODUCT_CATEGORY = _struct(categoryID=T.StringType(), name=T.StringType(), hierarchy=T.StringType())
PRODUCT_LIST_ITEM = _struct(
    SKU=T.StringType(),
    name=T.StringType(),
    quantity=T.LongType(),
    priceTotal=T.DoubleType(),
    currencyCode=T.StringType(),
    productCategories=T.ArrayType(PRODUCT_CATEGORY),
)

COMMERCE = _struct(
    order=_struct(priceTotal=T.DoubleType(), currencyCode=T.StringType(), purchaseID=T.StringType()),
    purchases=MEASURE,
    productViews=MEASURE,
    productListAdds=MEASURE,
    productListRemovals=MEASURE,
    productListOpens=MEASURE,
    productListViews=MEASURE,
    checkouts=MEASURE,
)

WEB = _struct(
    webPageDetails=_struct(name=T.StringType(), URL=T.StringType(), pageViews=MEASURE),
    webReferrer=_struct(URL=T.StringType(), type=T.StringType()),
)

EXPERIENCE_EVENT = _struct(
    _id=T.StringType(),
    timestamp=T.StringType(),
    eventType=T.StringType(),
    identityMap=IDENTITY_MAP,
    commerce=COMMERCE,
    productListItems=T.ArrayType(PRODUCT_LIST_ITEM),
    web=WEB,
)

INDIVIDUAL_PROFILE = _struct(
    _id=T.StringType(),
    identityMap=IDENTITY_MAP,
    person=_struct(
        name=_struct(firstName=T.StringType(), lastName=T.StringType(), fullName=T.StringType()),
        birthDate=T.StringType(),
        gender=T.StringType(),
    ),
    personalEmail=_struct(address=T.StringType()),
    homeAddress=_struct(
        street1=T.StringType(),
        city=T.StringType(),
        postalCode=T.StringType(),
        stateProvince=T.StringType(),
        countryCode=T.StringType(),
    ),
    _repo=_struct(createDate=T.StringType(), lastModifiedDate=T.StringType()),
)


def with_corrupt_record(schema: T.StructType) -> T.StructType:
    """The schema plus the column Spark fills with the raw text of a record it cannot parse."""
    return T.StructType(schema.fields + [T.StructField(CORRUPT_RECORD, T.StringType())])
