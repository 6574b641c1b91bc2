/*
 * Which JSON fields hold AttributeValues, by the field's name: one table for
 * both directions, so that what the encoder writes the decoder reads back.
 */
#ifndef DDBKIT_LUA_FIELDS_H
#define DDBKIT_LUA_FIELDS_H

#include <stddef.h>

/* What a JSON object field holds, by its name. */
enum ddbk_field_rule {
    DDBK_FIELD_PLAIN = 0,
    DDBK_FIELD_AVMAP,          /* Item, Key, ...: attribute name -> AV */
    DDBK_FIELD_AVMAP_LIST,     /* Items, Keys: a list of those maps (an
                                  object-shaped Keys, as in a Streams record,
                                  is one map) */
    DDBK_FIELD_AV_LIST,        /* AttributeValueList, Parameters */
    DDBK_FIELD_BY_TABLE,       /* RequestItems, Unprocessed*: table name ->
                                  plain value */
    DDBK_FIELD_BY_TABLE_ITEMS, /* object-shaped Responses: table name -> list
                                  of item maps */
    DDBK_FIELD_BY_ATTR,        /* KeyConditions, QueryFilter, ScanFilter:
                                  attribute name -> plain value */
    DDBK_FIELD_BY_ATTR_VALUE,  /* Expected, AttributeUpdates: attribute name
                                  -> plain object whose Value is an AV */
    DDBK_FIELD_RAW,            /* Tags: plain all the way down, no field
                                  rules (a Tag's Key is a string) */
    /* Never returned by ddbk__field_rule; used for what the legacy
     * parameters nest: */
    DDBK_FIELD_AV,             /* one AttributeValue */
    DDBK_FIELD_PLAIN_VALUE_AV  /* a plain object whose "Value" is an AV */
};

enum ddbk_field_rule ddbk__field_rule(const char *k, size_t n);

#endif
