/*
 * The field-name rules (see fields.h): the one list of DynamoDB API field
 * names that hold AttributeValues (or, for Tags, must not be read as such).
 */
#include <string.h>

#include "fields.h"

#define FIELD_IS(lit) (memcmp(k, lit, sizeof(lit) - 1) == 0)

enum ddbk_field_rule ddbk__field_rule(const char *k, size_t n)
{
    /* By length first: most API fields (TableName, ReturnValues, ...) are
     * ruled out without touching their bytes. */
    switch (n) {
    case 3:
        if (FIELD_IS("Key")) return DDBK_FIELD_AVMAP;
        break;
    case 4:
        if (FIELD_IS("Item")) return DDBK_FIELD_AVMAP;
        if (FIELD_IS("Keys")) return DDBK_FIELD_AVMAP_LIST;
        if (FIELD_IS("Tags")) return DDBK_FIELD_RAW;
        break;
    case 5:
        if (FIELD_IS("Items")) return DDBK_FIELD_AVMAP_LIST;
        break;
    case 8:
        if (FIELD_IS("Expected")) return DDBK_FIELD_BY_ATTR_VALUE;
        if (FIELD_IS("NewImage") || FIELD_IS("OldImage")) return DDBK_FIELD_AVMAP;
        break;
    case 9:
        if (FIELD_IS("Responses")) return DDBK_FIELD_BY_TABLE_ITEMS;
        break;
    case 10:
        if (FIELD_IS("Attributes")) return DDBK_FIELD_AVMAP;
        if (FIELD_IS("Parameters")) return DDBK_FIELD_AV_LIST;
        if (FIELD_IS("ScanFilter")) return DDBK_FIELD_BY_ATTR;
        break;
    case 11:
        if (FIELD_IS("QueryFilter")) return DDBK_FIELD_BY_ATTR;
        break;
    case 12:
        if (FIELD_IS("RequestItems")) return DDBK_FIELD_BY_TABLE;
        break;
    case 13:
        if (FIELD_IS("KeyConditions")) return DDBK_FIELD_BY_ATTR;
        break;
    case 15:
        if (FIELD_IS("UnprocessedKeys")) return DDBK_FIELD_BY_TABLE;
        break;
    case 16:
        if (FIELD_IS("LastEvaluatedKey")) return DDBK_FIELD_AVMAP;
        if (FIELD_IS("UnprocessedItems")) return DDBK_FIELD_BY_TABLE;
        if (FIELD_IS("AttributeUpdates")) return DDBK_FIELD_BY_ATTR_VALUE;
        break;
    case 17:
        if (FIELD_IS("ExclusiveStartKey") || FIELD_IS("ItemCollectionKey"))
            return DDBK_FIELD_AVMAP;
        break;
    case 18:
        if (FIELD_IS("AttributeValueList")) return DDBK_FIELD_AV_LIST;
        break;
    case 25:
        if (FIELD_IS("ExpressionAttributeValues")) return DDBK_FIELD_AVMAP;
        break;
    default:
        break;
    }
    return DDBK_FIELD_PLAIN;
}
