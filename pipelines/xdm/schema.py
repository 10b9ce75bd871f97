"""Explicit Spark schemas for XDM ExperienceEvents and Individual Profiles (export form).

Fields follow the XDM field groups Adobe Experience Platform exports: `_id`,
`timestamp`, `eventType`, `identityMap`, `commerce` (order with payments, the counters),
`productListItems` (categories, selected options), `web` (page details, interaction,
referrer), `channel`, `marketing`, `environment`, `placeContext`; profiles carry `person`,
`personalEmail`, `mobilePhone`, the addresses, `identityMap` and `_repo`. Anything else a
record carries (tenant field groups `_<tenantId>` included) is kept as rescued data. Reading with an
explicit schema keeps ingest fast (no inference pass) and makes a wrong type visible.
`timestamp` is read as a string and parsed afterwards, so a bad value can be named.
"""

from pyspark.sql import types as T


def _struct(**fields: T.DataType) -> T.StructType:
    return T.StructType([T.StructField(name, dtype) for name, dtype in fields.items()])


MEASURE = _struct(value=T.DoubleType())
GEO = _struct(countryCode=T.StringType(), stateProvince=T.StringType(), city=T.StringType(),
              postalCode=T.StringType(), latitude=T.DoubleType(), longitude=T.DoubleType())

IDENTITY_ITEM = _struct(id=T.StringType(), primary=T.BooleanType(), authenticatedState=T.StringType())
IDENTITY_MAP = T.MapType(T.StringType(), T.ArrayType(IDENTITY_ITEM))

# XDM's Category data type (categoryID, categoryName, categoryPath), and the `name`,
# `hierarchy` and `schema` some exports carry instead of its name and path.
PRODUCT_CATEGORY = _struct(categoryID=T.StringType(), categoryName=T.StringType(), categoryPath=T.StringType(),
                           name=T.StringType(), hierarchy=T.StringType(), schema=T.StringType())
SELECTED_OPTION = _struct(attribute=T.StringType(), value=T.StringType())
PRODUCT_LIST_ITEM = _struct(
    _id=T.StringType(),              # the line item (`@id` in the JSON-LD form)
    SKU=T.StringType(),
    name=T.StringType(),
    product=T.StringType(),
    productImageUrl=T.StringType(),
    quantity=T.LongType(),
    priceTotal=T.DoubleType(),
    discountAmount=T.DoubleType(),
    refundAmount=T.DoubleType(),
    currencyCode=T.StringType(),
    productAddMethod=T.StringType(),
    productCategories=T.ArrayType(PRODUCT_CATEGORY),
    selectedOptions=T.ArrayType(SELECTED_OPTION),
)

PAYMENT = _struct(paymentType=T.StringType(), paymentAmount=T.DoubleType(), currencyCode=T.StringType(),
                  transactionID=T.StringType())
ORDER = _struct(
    purchaseID=T.StringType(),
    purchaseOrderNumber=T.StringType(),
    orderType=T.StringType(),
    priceTotal=T.DoubleType(),
    currencyCode=T.StringType(),
    taxAmount=T.DoubleType(),
    discountAmount=T.DoubleType(),
    payments=T.ArrayType(PAYMENT),
    createdDate=T.StringType(),
    lastUpdatedDate=T.StringType(),
    cancelDate=T.StringType(),
)
COMMERCE = _struct(
    order=ORDER,
    promotionID=T.StringType(),
    purchases=MEASURE,
    instantPurchase=MEASURE,
    inStorePurchase=MEASURE,
    cartAbandons=MEASURE,
    productViews=MEASURE,
    productListAdds=MEASURE,
    productListRemovals=MEASURE,
    productListOpens=MEASURE,
    productListViews=MEASURE,
    productListReopens=MEASURE,
    saveForLaters=MEASURE,
    checkouts=MEASURE,
)

WEB = _struct(
    webPageDetails=_struct(name=T.StringType(), viewName=T.StringType(), URL=T.StringType(),
                           siteSection=T.StringType(), primarySiteSection=T.StringType(),
                           primarySiteSectionID=T.StringType(), secondarySiteSection=T.StringType(),
                           secondarySiteSectionID=T.StringType(), server=T.StringType(),
                           isHomePage=T.BooleanType(), isErrorPage=T.BooleanType(), pageType=T.StringType(),
                           previousPageType=T.StringType(), pageViews=MEASURE),
    webInteraction=_struct(name=T.StringType(), URL=T.StringType(), type=T.StringType(), linkClicks=MEASURE),
    webReferrer=_struct(URL=T.StringType(), type=T.StringType()),
)

CHANNEL = _struct(_id=T.StringType(), _type=T.StringType(), mediaType=T.StringType(),
                  mediaAction=T.StringType(), typeAtSource=T.StringType())
MARKETING = _struct(trackingCode=T.StringType(), campaignGroup=T.StringType(), campaignName=T.StringType())
ENVIRONMENT = _struct(
    type=T.StringType(),
    browserDetails=_struct(name=T.StringType(), version=T.StringType(), userAgent=T.StringType()),
    operatingSystem=T.StringType(),
    operatingSystemVersion=T.StringType(),
    ipV4=T.StringType(),
    language=T.StringType(),
)
PLACE_CONTEXT = _struct(localTime=T.StringType(), localTimezoneOffset=T.LongType(), geo=GEO)

EXPERIENCE_EVENT = _struct(
    _id=T.StringType(),
    timestamp=T.StringType(),
    eventType=T.StringType(),
    identityMap=IDENTITY_MAP,
    commerce=COMMERCE,
    productListItems=T.ArrayType(PRODUCT_LIST_ITEM),
    web=WEB,
    channel=CHANNEL,
    marketing=MARKETING,
    environment=ENVIRONMENT,
    placeContext=PLACE_CONTEXT,
)

ADDRESS = _struct(street1=T.StringType(), street2=T.StringType(), city=T.StringType(),
                  postalCode=T.StringType(), stateProvince=T.StringType(), country=T.StringType(),
                  countryCode=T.StringType())

INDIVIDUAL_PROFILE = _struct(
    _id=T.StringType(),
    identityMap=IDENTITY_MAP,
    person=_struct(
        name=_struct(firstName=T.StringType(), middleName=T.StringType(), lastName=T.StringType(),
                     fullName=T.StringType(), courtesyTitle=T.StringType()),
        birthDate=T.StringType(),
        birthYear=T.LongType(),
        gender=T.StringType(),
    ),
    personalEmail=_struct(address=T.StringType(), primary=T.BooleanType(), status=T.StringType()),
    mobilePhone=_struct(number=T.StringType(), primary=T.BooleanType(), status=T.StringType()),
    homeAddress=ADDRESS,
    workAddress=ADDRESS,
    mailingAddress=ADDRESS,
    # Audit fields: when the fragment was made and last changed (`xdm:repo:...` in JSON-LD).
    _repo=_struct(createDate=T.StringType(), lastModifiedDate=T.StringType(), modifyDate=T.StringType()),
    modifiedAt=T.StringType(),
)
