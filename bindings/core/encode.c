/*
 * Lua request table -> DynamoDB JSON, in one walk, written straight into the
 * caller's buffer. Field names decide where AttributeValues start (see
 * ddbk__field_rule); below them Lua types decide the AttributeValue type.
 *
 * The walk reads tables raw (lua_next, lua_rawgeti): no metamethod runs, so
 * no Lua code runs, and nothing is allocated per value. Errors are returned
 * with the Lua path of the offending value and the buffer is cut back to
 * where it was.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "fields.h"
#include "marshal.h"
#include "numtext.h"
#include "path.h"
#include "values.h"

#define MAX_DEPTH 64     /* tables on one path, of any kind */
/* DynamoDB allows 32 levels of nesting and counts the item itself as level
 * 1 (DynamoDB Local 3.3: an attribute holding 31 nested maps is accepted, 32
 * is "Nesting Levels have exceeded supported limits"; the same for an
 * ExpressionAttributeValues value). So a top-level attribute value is level
 * 2, and a map or list at level 33 is the error. */
#define MAX_AV_LEVELS 32
#define TOP_AV_LEVEL 2

enum tkind { K_PLAIN, K_NULL, K_ARRAY, K_BINARY, K_SET, K_DECIMAL };

static const char *const kind_name[] = {
    "table", "ddbkit.null", "ddbkit.array", "ddbkit.binary", "ddbkit.set",
    "ddbkit.decimal"};

/* One step of the path to the value being encoded, for error messages. The
 * key points into a Lua string that is on the stack while the step is. */
typedef struct step {
    const char *key; /* NULL: a list index */
    size_t klen;
    int64_t index;
} step;

typedef struct enc {
    lua_State *L;
    ddbk_buf *out;
    char *err;
    size_t errlen;
    /* the value types, recognised by identity */
    const void *null_p, *array_mt, *binary_mt, *set_mt, *decimal_mt;
    int depth;                       /* tables being visited */
    int raw;                         /* > 0: inside Tags, no field rules */
    const void *visiting[MAX_DEPTH]; /* ...for cycle detection */
    int npath;
    step path[MAX_DEPTH + 2];
} enc;

/* object modes: what the keys of a string-keyed table are */
enum omode {
    OM_FIELDS, /* API field names: their rule decides the value */
    OM_NAMED,  /* table or attribute names: one rule for every value */
    OM_AV      /* attribute names: every value is an AttributeValue */
};

/* list modes: what the elements are */
enum lmode { LM_PLAIN, LM_AV, LM_AVMAP };

static int enc_plain(enc *e, int v, int vav);
static int enc_field(enc *e, int v, int rule);
static int enc_avmap(enc *e, int t);
static int enc_av(enc *e, int v, int level);

/* -------------------------------------------------------------- errors */

/* Writes the path in Lua terms: Item.a["b c"][3]. */
static size_t path_format(const enc *e, char *dst, size_t cap)
{
    size_t len = 0;
    if (e->npath == 0)
        return ddbk__path_add(dst, len, cap, "request");
    for (int i = 0; i < e->npath; i++) {
        const step *s = &e->path[i];
        if (!s->key)
            len = ddbk__path_add(dst, len, cap, "[%lld]", (long long)s->index);
        else
            len = ddbk__path_key(dst, len, cap, s->key, s->klen, i == 0);
    }
    return len;
}

static int fail(enc *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(enc *e, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e->errlen) {
        size_t len = path_format(e, e->err, e->errlen);
        ddbk__path_add(e->err, len, e->errlen, ": %s", msg);
    }
    return -1;
}

static void path_key(enc *e, const char *k, size_t n)
{
    step *s = &e->path[e->npath++];
    s->key = k;
    s->klen = n;
}

static void path_index(enc *e, int64_t i)
{
    step *s = &e->path[e->npath++];
    s->key = NULL;
    s->index = i;
}

/* -------------------------------------------------------------- output */

static int grow_fail(enc *e, size_t n)
{
    size_t max = e->out->max ? e->out->max : DDBK_BUF_DEFAULT_MAX;
    if (n > max || e->out->len > max - n)
        return fail(e, "request is larger than the %zu-byte limit", max);
    return fail(e, "out of memory");
}

/* Room for n more bytes (and the terminator), usually without a call. */
static inline int reserve(enc *e, size_t n)
{
    ddbk_buf *b = e->out;
    if (b->len + n < b->cap)
        return 0;
    return ddbk_buf_reserve(b, n) == 0 ? 0 : grow_fail(e, n);
}

static inline int put(enc *e, const void *p, size_t n)
{
    ddbk_buf *b = e->out;
    if (b->len + n < b->cap || ddbk_buf_reserve(b, n) == 0) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
    }
    return grow_fail(e, n);
}

#define PUT_LIT(e, lit) put((e), (lit), sizeof(lit) - 1)

static inline int putch(enc *e, char c)
{
    ddbk_buf *b = e->out;
    if (b->len + 1 < b->cap) {
        b->data[b->len++] = c;
        return 0;
    }
    return put(e, &c, 1);
}

/* ------------------------------------------------------------- strings */

/* Bytes copied as they are inside a JSON string: printable ASCII except the
 * two that need a backslash. Bytes >= 0x80 are copied too once the UTF-8
 * sequence they start has been checked. */
static const unsigned char plain_char[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),                                  /* 0x00-0x1f: escape */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x20-0x2f: '"' */
    R16(1), R16(1),                                  /* 0x30-0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x50-0x5f: '\\' */
    R16(1), R16(1),                                  /* 0x60-0x7f */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0)
#undef R16
};

/* Eight plain ASCII bytes at once: none below 0x20, none '"' or '\\', none
 * with the high bit. The tests may report a byte that is not there (a
 * borrow), never miss one that is: a miss only sends us to the slow path. */
static inline int word_plain(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t ctl = (w - ones * 0x20) & ~w & high;
    uint64_t q = w ^ (ones * '"');
    uint64_t bs = w ^ (ones * '\\');
    q = (q - ones) & ~q & high;
    bs = (bs - ones) & ~bs & high;
    return ((ctl | q | bs | (w & high)) == 0);
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
        return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
        return n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
                       (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Writes s as a JSON string. Returns 0; -1 when the buffer failed (error
 * set); 1 when s is not valid UTF-8 (nothing set: the caller says what the
 * string was). Runs of plain bytes are copied with one memcpy. */
static int json_str(enc *e, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;

    /* exact for the common string with nothing to escape */
    if (reserve(e, n + 2) || putch(e, '"'))
        return -1;
    while (i < n) {
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!word_plain(w))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        if (plain_char[c]) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t len = utf8_seq(s + i, n - i);
            if (!len)
                return 1;
            i += len;
            continue;
        }
        if (put(e, s + run, i - run))
            return -1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if (put(e, esc, elen))
            return -1;
        run = ++i;
    }
    if (put(e, s + run, n - run) || putch(e, '"'))
        return -1;
    return 0;
}

/* A string value: its error names the value. */
static int put_string(enc *e, int v)
{
    size_t n;
    const char *s = lua_tolstring(e->L, v, &n);
    int r = json_str(e, s, n);
    if (r > 0)
        return fail(e, "string is not valid UTF-8");
    return r;
}

/* ------------------------------------------------------------- numbers */

/* The number at v as N text: integers exactly, floats as the shortest text
 * that reads back to the same double. NaN and infinities have no N. */
static int put_number(enc *e, int v)
{
    char buf[DDBK_NUMBUF];
    size_t n;
#if DDBK_HAS_INTEGERS
    if (lua_isinteger(e->L, v)) {
        n = ddbk__fmt_int((int64_t)lua_tointeger(e->L, v), buf);
        return put(e, buf, n);
    }
#endif
    double d = (double)lua_tonumber(e->L, v);
    if (isnan(d))
        return fail(e, "number is NaN");
    if (isinf(d))
        return fail(e, "number is %s", d < 0 ? "-inf" : "inf");
    n = ddbk__fmt_double(d, buf);
    return put(e, buf, n);
}

/* -------------------------------------------------------------- tables */

static enum tkind table_kind(enc *e, int t)
{
    lua_State *L = e->L;
    if (lua_topointer(L, t) == e->null_p)
        return K_NULL;
    if (!lua_getmetatable(L, t))
        return K_PLAIN;
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (mt == e->array_mt) return K_ARRAY;
    if (mt == e->binary_mt) return K_BINARY;
    if (mt == e->set_mt) return K_SET;
    if (mt == e->decimal_mt) return K_DECIMAL;
    return K_PLAIN; /* someone else's class: encoded by its raw contents */
}

/* Pushes t on the path of tables being visited: catches cycles (a small
 * linear scan: the path is at most MAX_DEPTH long and usually under 10) and
 * runaway nesting, and makes room on the Lua stack for this level. */
static int enter(enc *e, int t)
{
    const void *p = lua_topointer(e->L, t);
    for (int i = 0; i < e->depth; i++)
        if (e->visiting[i] == p)
            return fail(e, "cycle (table contains itself)");
    if (e->depth >= MAX_DEPTH)
        return fail(e, "nesting deeper than %d levels", MAX_DEPTH);
    if (!lua_checkstack(e->L, 8))
        return fail(e, "Lua stack exhausted");
    e->visiting[e->depth++] = p;
    return 0;
}

static void leave(enc *e)
{
    e->depth--;
}

/* The key at the stack top, which is not a string, in an error message. */
static int bad_key(enc *e, int as_list)
{
    lua_State *L = e->L;
    int kt = lua_type(L, -1);
    if (kt == LUA_TSTRING)
        return fail(e, "%s", as_list ? "table mixes string keys and list indices"
                                     : "table has a string key");
    if (kt == LUA_TNUMBER && !as_list)
        return fail(e, "table mixes string keys and list indices");
    if (kt == LUA_TNUMBER) {
        char buf[DDBK_NUMBUF];
        double d = (double)lua_tonumber(L, -1);
        if (isfinite(d))
            ddbk__fmt_double(d, buf);
        else
            snprintf(buf, sizeof buf, "%s", isnan(d) ? "nan" : "inf");
        return fail(e, "table key %s is not a list index", buf);
    }
    return fail(e, "table has a %s key", lua_typename(L, kt));
}

/* Checks that t's keys are exactly 1..n and sets *np. Costs one lua_next
 * walk: list order must come from lua_rawgeti, since lua_next does not
 * promise 1, 2, 3 for keys living in the hash part. */
static int list_len(enc *e, int t, size_t *np)
{
    lua_State *L = e->L;
    int64_t count = 0, max = 0;

    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        int64_t k;
        if (lua_type(L, -1) != LUA_TNUMBER)
            return bad_key(e, 1);
#if DDBK_HAS_INTEGERS
        if (!lua_isinteger(L, -1))
            return bad_key(e, 1);
        k = (int64_t)lua_tointeger(L, -1);
#else
        double d = (double)lua_tonumber(L, -1);
        if (!(d >= 1 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
            return bad_key(e, 1);
        k = (int64_t)d;
#endif
        if (k < 1)
            return bad_key(e, 1);
        count++;
        if (k > max)
            max = k;
    }
    if (count != max) {
        int64_t i = 1;
        for (;; i++) {
            lua_rawgeti(L, t, (int)i);
            int missing = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (missing)
                break;
        }
        return fail(e, "sparse list (index %lld missing)", (long long)i);
    }
    *np = (size_t)count;
    return 0;
}

/* Writes t's elements 1..n as a JSON array. */
static int put_list(enc *e, int t, enum lmode mode, int level)
{
    lua_State *L = e->L;
    size_t n = 0;
    if (list_len(e, t, &n) || putch(e, '['))
        return -1;
    for (size_t i = 1; i <= n; i++) {
        if (i > 1 && putch(e, ','))
            return -1;
        lua_rawgeti(L, t, (int)i);
        int v = lua_gettop(L), rc;
        path_index(e, (int64_t)i);
        switch (mode) {
        case LM_PLAIN:
            rc = enc_plain(e, v, 0);
            break;
        case LM_AV:
            rc = enc_av(e, v, level);
            break;
        default: /* LM_AVMAP */
            if (lua_type(L, v) != LUA_TTABLE || lua_topointer(L, v) == e->null_p)
                rc = fail(e, "expected a table of attributes, got %s",
                          lua_type(L, v) == LUA_TTABLE ? "ddbkit.null"
                                                       : luaL_typename(L, v));
            else
                rc = enc_avmap(e, v);
            break;
        }
        if (rc)
            return -1;
        e->npath--;
        lua_pop(L, 1);
    }
    return putch(e, ']');
}

/* Writes t as a JSON object. Called with t's first entry (string key and
 * value) on the stack top, as lua_next left it; consumes the iteration.
 * `arg` is the rule of every value (OM_NAMED) or the AV level (OM_AV). */
static int put_object(enc *e, int t, enum omode mode, int arg, int vav)
{
    lua_State *L = e->L;
    int first = 1;

    if (putch(e, '{'))
        return -1;
    do {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            return bad_key(e, 0);
        }
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        if (!first && putch(e, ','))
            return -1;
        first = 0;
        int r = json_str(e, k, kl);
        if (r)
            return r < 0 ? -1 : fail(e, "%s is not valid UTF-8",
                                     mode == OM_AV ? "attribute name" : "key");
        if (putch(e, ':'))
            return -1;
        path_key(e, k, kl);
        int v = lua_gettop(L);
        switch (mode) {
        case OM_FIELDS:
            if (vav && kl == 5 && memcmp(k, "Value", 5) == 0)
                r = enc_field(e, v, DDBK_FIELD_AV);
            else
                r = enc_field(e, v, e->raw ? DDBK_FIELD_PLAIN : ddbk__field_rule(k, kl));
            break;
        case OM_NAMED:
            r = enc_field(e, v, arg);
            break;
        default: /* OM_AV */
            r = enc_av(e, v, arg);
            break;
        }
        if (r)
            return -1;
        e->npath--;
        lua_pop(L, 1);
    } while (lua_next(L, t));
    return putch(e, '}');
}

/* A plain (non-AttributeValue) table: an object when its keys are strings,
 * an array when they are 1..n or it is a ddbkit.array, {} when empty.
 * named_rule >= 0 makes the object's keys names (of tables or attributes)
 * whose values all follow that rule; vav makes "Value" an AttributeValue. */
static int enc_plain_table(enc *e, int t, int named_rule, int vav)
{
    lua_State *L = e->L;
    enum tkind kind = table_kind(e, t);
    int rc;

    if (kind == K_NULL)
        return PUT_LIT(e, "null");
    if (kind == K_BINARY || kind == K_SET || kind == K_DECIMAL)
        return fail(e, "a %s is only allowed inside an attribute value",
                    kind_name[kind]);
    if (enter(e, t))
        return -1;
    if (kind == K_ARRAY) {
        rc = put_list(e, t, LM_PLAIN, 0);
    } else {
        lua_pushnil(L);
        if (!lua_next(L, t)) {
            rc = PUT_LIT(e, "{}");
        } else if (lua_type(L, -2) == LUA_TSTRING) {
            rc = named_rule >= 0 ? put_object(e, t, OM_NAMED, named_rule, 0)
                                 : put_object(e, t, OM_FIELDS, 0, vav);
        } else {
            lua_pop(L, 2);
            rc = put_list(e, t, LM_PLAIN, 0);
        }
    }
    leave(e);
    return rc;
}

static int enc_plain(enc *e, int v, int vav)
{
    lua_State *L = e->L;
    switch (lua_type(L, v)) {
    case LUA_TSTRING:
        return put_string(e, v);
    case LUA_TNUMBER:
        return put_number(e, v);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, v) ? PUT_LIT(e, "true") : PUT_LIT(e, "false");
    case LUA_TTABLE:
        return enc_plain_table(e, v, -1, vav);
    case LUA_TLIGHTUSERDATA:
        /* cjson.null and ngx.null are NULL light userdata: OpenResty code
         * passes them where it means JSON null. */
        if (lua_touserdata(L, v) == NULL)
            return PUT_LIT(e, "null");
        return fail(e, "cannot encode a %s", luaL_typename(L, v));
    default:
        return fail(e, "cannot encode a %s", luaL_typename(L, v));
    }
}

/* {name = AttributeValue, ...}: Item, Key, ExpressionAttributeValues... */
static int enc_avmap(enc *e, int t)
{
    lua_State *L = e->L;
    enum tkind kind = table_kind(e, t);
    int rc;

    if (kind != K_PLAIN)
        return fail(e, "expected a table of attributes, got a %s", kind_name[kind]);
    if (enter(e, t))
        return -1;
    lua_pushnil(L);
    if (!lua_next(L, t)) {
        rc = PUT_LIT(e, "{}");
    } else if (lua_type(L, -2) == LUA_TSTRING) {
        rc = put_object(e, t, OM_AV, TOP_AV_LEVEL, 0);
    } else {
        lua_pop(L, 1);
        rc = lua_type(L, -1) == LUA_TNUMBER
                 ? fail(e, "expected a table of attributes (name = value), got a list")
                 : bad_key(e, 0);
    }
    leave(e);
    return rc;
}

/* A list of attribute tables (Items, Keys); object-shaped, it is one
 * attribute table (a Streams record's Keys). Or a list of AttributeValues. */
static int enc_list_of(enc *e, int t, enum lmode mode)
{
    lua_State *L = e->L;
    enum tkind kind = table_kind(e, t);
    int rc;

    if (kind != K_PLAIN && kind != K_ARRAY)
        return fail(e, "expected a list, got a %s", kind_name[kind]);
    if (enter(e, t))
        return -1;
    lua_pushnil(L);
    if (!lua_next(L, t)) {
        rc = PUT_LIT(e, "[]");
    } else if (lua_type(L, -2) == LUA_TSTRING && kind == K_PLAIN) {
        if (mode == LM_AVMAP)
            rc = put_object(e, t, OM_AV, TOP_AV_LEVEL, 0);
        else
            rc = fail(e, "expected a list of attribute values, got a table with string keys");
    } else {
        lua_pop(L, 2);
        rc = put_list(e, t, mode, TOP_AV_LEVEL);
    }
    leave(e);
    return rc;
}

/* What a field of each rule must hold, for its error. */
static const char *rule_wants(int rule)
{
    switch (rule) {
    case DDBK_FIELD_AVMAP: return "a table of attributes";
    case DDBK_FIELD_AVMAP_LIST: return "a table (a list of tables of attributes)";
    case DDBK_FIELD_AV_LIST: return "a table (a list of attribute values)";
    case DDBK_FIELD_BY_TABLE:
    case DDBK_FIELD_BY_TABLE_ITEMS: return "a table (keyed by table name)";
    case DDBK_FIELD_BY_ATTR:
    case DDBK_FIELD_BY_ATTR_VALUE: return "a table (keyed by attribute name)";
    default: return "a table";
    }
}

/* The value of a field whose name has a rule. Such a field must hold a
 * table (or JSON null, which stands for the field's absence): anything else
 * is refused here, before a byte is sent, as DynamoDB would refuse it (with
 * a 500 for some, which would be retried). Tags are the one place where
 * these names (a Tag's Key) are plain strings: DDBK_FIELD_RAW turns the
 * rules off below them. */
static int enc_field(enc *e, int v, int rule)
{
    lua_State *L = e->L;
    if (rule == DDBK_FIELD_PLAIN)
        return enc_plain(e, v, 0);
    if (rule == DDBK_FIELD_AV)
        return enc_av(e, v, TOP_AV_LEVEL);
    if (rule == DDBK_FIELD_RAW) {
        e->raw++;
        int rc = enc_plain(e, v, 0);
        e->raw--;
        return rc;
    }
    if (lua_type(L, v) != LUA_TTABLE) {
        if (lua_type(L, v) == LUA_TLIGHTUSERDATA && lua_touserdata(L, v) == NULL)
            return enc_plain(e, v, 0); /* cjson.null, ngx.null */
        return fail(e, "expected %s, got %s", rule_wants(rule), luaL_typename(L, v));
    }
    if (lua_topointer(L, v) == e->null_p)
        return enc_plain(e, v, 0);
    switch (rule) {
    case DDBK_FIELD_AVMAP:
        return enc_avmap(e, v);
    case DDBK_FIELD_AVMAP_LIST:
        return enc_list_of(e, v, LM_AVMAP);
    case DDBK_FIELD_AV_LIST:
        return enc_list_of(e, v, LM_AV);
    case DDBK_FIELD_BY_TABLE:
    case DDBK_FIELD_BY_ATTR:
        return enc_plain_table(e, v, DDBK_FIELD_PLAIN, 0);
    case DDBK_FIELD_BY_TABLE_ITEMS:
        return enc_plain_table(e, v, DDBK_FIELD_AVMAP_LIST, 0);
    case DDBK_FIELD_BY_ATTR_VALUE:
        return enc_plain_table(e, v, DDBK_FIELD_PLAIN_VALUE_AV, 0);
    case DDBK_FIELD_PLAIN_VALUE_AV:
        return enc_plain_table(e, v, -1, 1);
    default:
        return enc_plain(e, v, 0);
    }
}

/* ------------------------------------------------------ AttributeValues */

static int put_b64(enc *e, const unsigned char *s, size_t n)
{
    /* EVP_EncodeBlock takes an int: chunks of a multiple of 3 bytes */
    const size_t chunk = (size_t)3 << 24;
    while (n > 0) {
        size_t take = n < chunk ? n : chunk;
        size_t outn = 4 * ((take + 2) / 3);
        if (reserve(e, outn)) /* also the NUL EVP_EncodeBlock writes */
            return -1;
        EVP_EncodeBlock((unsigned char *)e->out->data + e->out->len, s, (int)take);
        e->out->len += outn;
        s += take;
        n -= take;
    }
    return 0;
}

/* Pushes the field `name` of the value table t and returns it when it is a
 * string, else NULL. The caller pops it once done with the pointer (valid
 * only while the value is on the stack). */
static const char *field_str(enc *e, int t, const char *name, size_t *n)
{
    lua_State *L = e->L;
    lua_pushstring(L, name);
    lua_rawget(L, t);
    return lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, n) : NULL;
}

static int put_binary(enc *e, int t)
{
    size_t n;
    const char *s = field_str(e, t, "value", &n);
    if (!s)
        return fail(e, "ddbkit.binary has no string value");
    int rc = PUT_LIT(e, "{\"B\":\"") || put_b64(e, (const unsigned char *)s, n) ||
             PUT_LIT(e, "\"}");
    lua_pop(e->L, 1);
    return rc ? -1 : 0;
}

static int put_decimal_text(enc *e, int t)
{
    size_t n;
    const char *s = field_str(e, t, "text", &n);
    if (!s || !ddbk__num_valid(s, n, NULL))
        return fail(e, "ddbkit.decimal text is not a number");
    int rc = put(e, s, n);
    lua_pop(e->L, 1);
    return rc;
}

/* SS, NS or BS, by the first element; the rest must agree. */
static int put_set(enc *e, int t)
{
    static const char *const what[] = {"strings", "numbers", "binaries"};
    lua_State *L = e->L;
    size_t n = 0;
    int kind = -1;

    if (list_len(e, t, &n))
        return -1;
    if (n == 0)
        return fail(e, "empty set (DynamoDB has no empty sets)");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, t, (int)i);
        int v = lua_gettop(L), k = -1, rc = 0;
        enum tkind tk = K_PLAIN;
        path_index(e, (int64_t)i);
        switch (lua_type(L, v)) {
        case LUA_TSTRING:
            k = 0;
            break;
        case LUA_TNUMBER:
            k = 1;
            break;
        case LUA_TTABLE:
            tk = table_kind(e, v);
            k = tk == K_DECIMAL ? 1 : tk == K_BINARY ? 2 : -1;
            break;
        default:
            break;
        }
        if (k < 0)
            return fail(e, "set element is a %s", lua_type(L, v) == LUA_TTABLE
                                                      ? kind_name[tk]
                                                      : luaL_typename(L, v));
        if (kind < 0) {
            kind = k;
            static const char *const open[] = {"{\"SS\":[", "{\"NS\":[", "{\"BS\":["};
            if (put(e, open[k], strlen(open[k])))
                return -1;
        } else if (k != kind) {
            return fail(e, "set mixes %s and %s", what[kind], what[k]);
        } else if (putch(e, ',')) {
            return -1;
        }
        if (k == 0) {
            rc = put_string(e, v);
        } else if (k == 1) {
            rc = putch(e, '"') ||
                 (tk == K_DECIMAL ? put_decimal_text(e, v) : put_number(e, v)) ||
                 putch(e, '"');
        } else {
            size_t bn;
            const char *b = field_str(e, v, "value", &bn);
            rc = !b ? fail(e, "ddbkit.binary has no string value")
                    : putch(e, '"') || put_b64(e, (const unsigned char *)b, bn) ||
                          putch(e, '"');
            lua_pop(L, 1);
        }
        if (rc)
            return -1;
        e->npath--;
        lua_pop(L, 1);
    }
    return PUT_LIT(e, "]}");
}

/* A table as an AttributeValue. level is the nesting level this value has
 * as an M or L, counted as DynamoDB does (TOP_AV_LEVEL for an attribute of
 * an item). */
static int enc_av_table(enc *e, int t, int level)
{
    lua_State *L = e->L;
    enum tkind kind = table_kind(e, t);
    int rc;

    switch (kind) {
    case K_NULL:
        return PUT_LIT(e, "{\"NULL\":true}");
    case K_BINARY:
        return put_binary(e, t);
    case K_DECIMAL:
        return PUT_LIT(e, "{\"N\":\"") || put_decimal_text(e, t) || PUT_LIT(e, "\"}");
    case K_SET:
        return put_set(e, t);
    default:
        break;
    }
    if (enter(e, t))
        return -1;
    if (level > MAX_AV_LEVELS)
        return fail(e, "nesting deeper than %d levels", MAX_AV_LEVELS);
    if (kind == K_ARRAY) {
        rc = PUT_LIT(e, "{\"L\":") || put_list(e, t, LM_AV, level + 1) || putch(e, '}');
    } else {
        lua_pushnil(L);
        if (!lua_next(L, t)) {
            rc = PUT_LIT(e, "{\"M\":{}}");
        } else if (lua_type(L, -2) == LUA_TSTRING) {
            rc = PUT_LIT(e, "{\"M\":") || put_object(e, t, OM_AV, level + 1, 0) ||
                 putch(e, '}');
        } else {
            lua_pop(L, 2);
            rc = PUT_LIT(e, "{\"L\":") || put_list(e, t, LM_AV, level + 1) ||
                 putch(e, '}');
        }
    }
    leave(e);
    return rc ? -1 : 0;
}

static int enc_av(enc *e, int v, int level)
{
    lua_State *L = e->L;
    switch (lua_type(L, v)) {
    case LUA_TSTRING:
        return PUT_LIT(e, "{\"S\":") || put_string(e, v) || putch(e, '}') ? -1 : 0;
    case LUA_TNUMBER:
        return PUT_LIT(e, "{\"N\":\"") || put_number(e, v) || PUT_LIT(e, "\"}") ? -1 : 0;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, v) ? PUT_LIT(e, "{\"BOOL\":true}")
                                   : PUT_LIT(e, "{\"BOOL\":false}");
    case LUA_TTABLE:
        return enc_av_table(e, v, level);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, v) == NULL) /* cjson.null / ngx.null */
            return PUT_LIT(e, "{\"NULL\":true}");
        return fail(e, "cannot encode a %s", luaL_typename(L, v));
    default:
        return fail(e, "cannot encode a %s", luaL_typename(L, v));
    }
}

/* ------------------------------------------------------------ the entry */

int ddbk_lua_encode_request(lua_State *L, int idx, ddbk_buf *out, char *err,
                            size_t errlen)
{
    enc e;
    int top = lua_gettop(L);
    size_t len0 = out->len;
    int rc;

    idx = ddbk__lua_absindex(L, idx);
    e.L = L;
    e.out = out;
    e.err = err;
    e.errlen = errlen;
    e.depth = 0;
    e.raw = 0;
    e.npath = 0;
    if (!lua_checkstack(L, DDBK_LUA_NREFS + 8)) {
        fail(&e, "Lua stack exhausted");
        return -1;
    }
    /* The objects live in the registry, so their addresses stay valid
     * after they are popped. */
    ddbk__lua_push_refs(L);
    e.null_p = lua_topointer(L, -5);
    e.array_mt = lua_topointer(L, -4);
    e.binary_mt = lua_topointer(L, -3);
    e.set_mt = lua_topointer(L, -2);
    e.decimal_mt = lua_topointer(L, -1);
    lua_settop(L, top);

    if (lua_type(L, idx) != LUA_TTABLE)
        rc = fail(&e, "expected a table, got %s", luaL_typename(L, idx));
    else
        rc = enc_plain(&e, idx, 0);
    lua_settop(L, top);
    if (rc) {
        out->len = len0;
        if (out->data)
            out->data[len0] = '\0';
        return -1;
    }
    out->data[out->len] = '\0'; /* every write left room for it */
    return 0;
}
