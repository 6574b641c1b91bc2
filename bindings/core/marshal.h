/*
 * Lua values <-> DynamoDB JSON, in one pass each way, with no intermediate
 * tree. The encoder walks a request table and writes the wire JSON straight
 * into a buffer; the decoder is driven by yajl's callbacks and builds Lua
 * values straight onto the stack.
 *
 * Which request fields hold AttributeValues is decided by the field name
 * (Item, Key, ExpressionAttributeValues, ExclusiveStartKey, Keys, ...); every
 * other field is plain JSON. Tables directly under RequestItems,
 * UnprocessedItems, UnprocessedKeys and an object-shaped Responses are keyed
 * by table name, so a table called "Item" cannot be mistaken for a field.
 */
#ifndef DDBKIT_MARSHAL_H
#define DDBKIT_MARSHAL_H

#include <lua.h>
#include "ddbkit.h"

/* Registers the value constructors and predicates in the table at module_idx:
 * null, array(t), binary(s), set(...), decimal(text), and is_binary, is_set,
 * is_decimal, is_array. Must be called once per lua_State (from luaopen);
 * their metatables live in the registry. */
void ddbk_lua_values_open(lua_State *L, int module_idx);

/* Encodes the request table at idx as DynamoDB JSON, appending to out.
 * Returns 0; or -1 with a message naming the path (for example
 * `Item.a.b[3]: string is not valid UTF-8`) in err, and out's length restored
 * to what it was on entry. Raises only on memory errors. */
int ddbk_lua_encode_request(lua_State *L, int idx, ddbk_buf *out, char *err,
                            size_t errlen);

/* Decodes a DynamoDB JSON response body and pushes one Lua value (a table
 * for every real response). Returns 0; or -1 with nothing pushed and a
 * message in err. Raises only on memory errors, and leaks nothing then. */
int ddbk_lua_decode_response(lua_State *L, const char *json, size_t len,
                             char *err, size_t errlen);

/* ddbk_lua_decode_response for the body of a successful call: the top-level
 * value must be a JSON object too (5, "s", null and [] are malformed). */
int ddbk_lua_decode_result(lua_State *L, const char *json, size_t len,
                           char *err, size_t errlen);

#endif
