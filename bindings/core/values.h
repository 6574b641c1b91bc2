/*
 * What values.c shares with encode.c and decode.c: where the value types'
 * metatables live, the number text rules, and the field-name rules that say
 * which JSON fields hold AttributeValues. Nothing here is part of the module's
 * API (see marshal.h for that); symbols are hidden so they never leak out of
 * core.so.
 */
#ifndef DDBKIT_VALUES_H
#define DDBKIT_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#define DDBK_LUA_HIDDEN __attribute__((visibility("hidden")))

/* Registry keys (strings, so a second copy of the module in the same state
 * finds the same objects and `null` stays unique). */
#define DDBK_LUA_NULL_KEY    "ddbkit.null"
#define DDBK_LUA_ARRAY_MT    "ddbkit.array"
#define DDBK_LUA_BINARY_MT   "ddbkit.binary"
#define DDBK_LUA_SET_MT      "ddbkit.set"
#define DDBK_LUA_DECIMAL_MT  "ddbkit.decimal"

/* Pushes, in this order, the null sentinel and the array, binary, set and
 * decimal metatables (5 values), creating them in the registry the first
 * time. Costs five registry lookups; raises only on memory errors. */
#define DDBK_LUA_NREFS 5
DDBK_LUA_HIDDEN void ddbk__lua_push_refs(lua_State *L);

/* lua_absindex for both Lua 5.4 and LuaJIT (which lacks it). */
static inline int ddbk__lua_absindex(lua_State *L, int idx)
{
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

/* ------------------------------------------------------- number text */

/* Longest text ddbk__fmt_double / ddbk__fmt_int write, plus the NUL. */
#define DDBK_NUMBUF 32

/* Writes n in decimal (no printf); returns the length. */
DDBK_LUA_HIDDEN size_t ddbk__fmt_int(int64_t n, char buf[DDBK_NUMBUF]);

/* Writes a finite double as the shortest of %.15g, %.16g and %.17g that
 * reads back to the same double, always with '.' as the decimal point
 * whatever the C locale; integral values below 2^53 are written as plain
 * integers ("10", not "1e+01"). Returns the length. */
DDBK_LUA_HIDDEN size_t ddbk__fmt_double(double d, char buf[DDBK_NUMBUF]);

/* strtod in the C locale, on n bytes that need not be NUL-terminated (a
 * short text is copied to the C stack, a long one to a Lua string that is
 * popped again: nothing to free if a memory error unwinds). Sets *ok to 0
 * when the n bytes are not, all of them, a number. */
DDBK_LUA_HIDDEN double ddbk__strtod(lua_State *L, const char *s, size_t n,
                                    int *ok);

/* Parses an integer text (optional '-', digits only) into *out; 0 when it is
 * not one or does not fit int64. */
DDBK_LUA_HIDDEN int ddbk__parse_int64(const char *s, size_t n, int64_t *out);

/* A number text DynamoDB takes as N: optional sign, digits with at most one
 * '.', optional exponent ("-1.5e+3", ".5", "5." and "+5" all pass). Fills *is_int when there is neither '.' nor an
 * exponent. Returns 1 when valid. */
DDBK_LUA_HIDDEN int ddbk__num_valid(const char *s, size_t n, int *is_int);

/* Compares the decimal values two valid number texts denote, exactly (no
 * rounding: sign, significant digits and decimal exponent). 1 when equal. */
DDBK_LUA_HIDDEN int ddbk__num_text_equal(const char *a, size_t an,
                                         const char *b, size_t bn);

/* Pushes the Lua value for the DynamoDB N text s (already valid): an integer
 * (Lua 5.4, integer text that fits int64), else a number when the double
 * reads back as the same decimal value, else a decimal carrying s. The
 * decimal metatable is at dec_mt (an absolute index). */
DDBK_LUA_HIDDEN void ddbk__push_n(lua_State *L, const char *s, size_t n,
                                  int dec_mt);

/* ---------------------------------------------------------- field names */

/* What a JSON object field holds, by its name. Both directions use the same
 * table so that what the encoder writes the decoder reads back. */
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

DDBK_LUA_HIDDEN enum ddbk_field_rule ddbk__field_rule(const char *k, size_t n);

/* ------------------------------------------------------------ base64 */

/* 1 when s (n bytes) is canonical padded base64 (length a multiple of 4,
 * alphabet A-Z a-z 0-9 + /, at most two trailing '='); *pad gets the number
 * of '='. EVP_DecodeBlock alone accepts "Q===" and "QQ=A". */
DDBK_LUA_HIDDEN int ddbk__b64_valid(const unsigned char *s, size_t n, int *pad);

/* Decodes s (n bytes) into out, which has room for n / 4 * 3 bytes, in one
 * pass that also validates: accepts exactly what ddbk__b64_valid accepts and
 * gives the bytes EVP_DecodeBlock would, less the padding. Returns the
 * decoded length, or -1 when s is not canonical padded base64. */
DDBK_LUA_HIDDEN long ddbk__b64_decode(const unsigned char *s, size_t n,
                                      unsigned char *out);

/* Error paths in Lua terms (Item.a["b c"][3]), shared by the encoder and
 * the decoder. Each appends to dst (bounded by cap, always terminated) and
 * returns the new length. A key that is an identifier is written .key (no
 * dot when first), any other as ["key"], escaped and cut at 40 bytes. */
size_t ddbk__path_add(char *dst, size_t len, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t ddbk__path_key(char *dst, size_t len, size_t cap, const char *k, size_t kl,
                      int first);

#endif
