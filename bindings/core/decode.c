/*
 * DynamoDB JSON -> Lua values, in one pass: yajl's callbacks build the
 * tables straight on the Lua stack, and an AttributeValue ({"S": "x"}) never
 * exists as a table, only as the value it stands for.
 *
 * A stack of frames mirrors the open JSON containers. Each frame knows what
 * its next value must be (its context), which the field names decide with
 * the same rules as the encoder (ddbk__field_rule).
 *
 * Memory: the yajl handle and a scratch buffer are owned by a userdata with
 * __gc, so when a Lua memory error unwinds out of a callback they are freed
 * by the collector, not leaked. One such userdata per lua_State (the
 * context, held in the registry with the value metatables) keeps its handle
 * between calls: yajl 2 has no reset, but a handle configured for multiple
 * values takes a new top-level value once the previous one completed, which
 * saves the handle's, the lexer's and the buffers' allocations on every
 * call. A call reuses it only when it is provably in a clean state (see
 * ddbk_lua_decode_response); any other outcome than one complete value
 * discards it, and whatever is not a plain success is decoded again by a
 * fresh single-value handle, so errors read exactly as before.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdint.h>

#include <yajl/yajl_parse.h>

#include <lauxlib.h>
#include <lua.h>

#include "base64.h"
#include "compat.h"
#include "fields.h"
#include "marshal.h"
#include "numtext.h"
#include "path.h"
#include "values.h"

#define MAX_TABLES 64                   /* Lua tables on one path */
#define MAX_FRAMES (2 * MAX_TABLES + 2) /* + one AV wrapper above each */
#define GUARD_MT "ddbkit.decoder"
/* A call whose input is larger gives its handle and scratch back, so that
 * one big response does not keep big buffers for the life of the state. */
#define KEEP_MAX ((size_t)64 * 1024)

/* What the next value must be. Only the first three take any JSON; a
 * field whose name has a rule must have the shape the rule says, or the
 * response is malformed: a wrong-typed Item, Items or LastEvaluatedKey is
 * never handed to Lua. (A Tag's "Key" is a string: Tags are C_RAW.) */
enum ctx {
    C_PLAIN,          /* any JSON */
    C_PLAIN_VAV,      /* plain; an object in it has an AV "Value" */
    C_RAW,            /* plain, and no field rules anywhere below */
    /* strict from here on: anything else is a malformed response */
    C_TOP,            /* a response: an object */
    C_AVMAP,          /* object: attribute name -> AV */
    C_AVMAP_LIST,     /* array of attribute maps (object: one map) */
    C_AV_LIST,        /* array of AVs */
    C_BY_TABLE,       /* object: name -> plain */
    C_BY_TABLE_ITEMS, /* object: table name -> array of attribute maps;
                         array: plain (TransactGetItems' Responses) */
    C_BY_ATTR_VALUE,  /* object: attribute name -> plain with AV "Value" */
    C_ITEM,           /* an attribute map in a list of them */
    C_AV,             /* an AttributeValue wrapper {"T": ...} */
    C_AV_S, C_AV_N, C_AV_B, C_AV_BOOL, C_AV_NULL, C_AV_M, C_AV_L,
    C_AV_SS, C_AV_NS, C_AV_BS,
    C_EL_S, C_EL_N, C_EL_B /* elements of SS, NS, BS */
};

/* What each strict context expected, for messages. */
static const char *const ctx_expects[] = {
    [C_TOP] = "a JSON object",
    [C_AVMAP] = "a map of attributes",
    [C_AVMAP_LIST] = "a list of maps of attributes",
    [C_AV_LIST] = "a list of AttributeValues",
    [C_BY_TABLE] = "an object keyed by table name",
    [C_BY_TABLE_ITEMS] = "an object keyed by table name, or a list",
    [C_BY_ATTR_VALUE] = "an object keyed by attribute name",
    [C_ITEM] = "a map of attributes",
    [C_AV] = "an AttributeValue object",
    [C_AV_S] = "S to be a string",
    [C_AV_N] = "N to be a string",
    [C_AV_B] = "B to be a string",
    [C_AV_BOOL] = "BOOL to be a boolean",
    [C_AV_NULL] = "NULL to be true",
    [C_AV_M] = "M to be an object",
    [C_AV_L] = "L to be an array",
    [C_AV_SS] = "SS to be an array",
    [C_AV_NS] = "NS to be an array",
    [C_AV_BS] = "BS to be an array",
    [C_EL_S] = "an SS element to be a string",
    [C_EL_N] = "an NS element to be a string",
    [C_EL_B] = "a BS element to be a string",
};

enum fkind { F_OBJ, F_ARR, F_WRAP };
enum omode { OM_FIELDS, OM_NAMED, OM_AV };

typedef struct frame {
    unsigned char kind;   /* enum fkind */
    unsigned char mode;   /* F_OBJ: enum omode */
    unsigned char next;   /* context of the next value */
    unsigned char child;  /* F_OBJ OM_NAMED: context of every value */
    unsigned char vav;    /* F_OBJ OM_FIELDS: "Value" is an AV */
    unsigned char raw;    /* F_OBJ OM_FIELDS: no field rules (Tags) */
    unsigned char haskey; /* F_OBJ: a key waits at tidx + 1 */
    unsigned char state;  /* F_WRAP: 0 no type yet, 1 type seen, 2 value done */
    int tidx;             /* F_OBJ, F_ARR: the table's stack index */
    int n;                /* F_ARR: elements so far */
} frame;

typedef struct dec {
    lua_State *L;
    yajl_handle h;          /* freed by release() or, after an unwind, __gc */
    unsigned char *scratch; /* base64 output too large for the C stack */
    size_t scratch_cap;
    int refs;               /* stack index of null; the mts follow */
    int nframes, ntables, done, failed;
    int top;                /* context of the top-level value */
    int multi;              /* h takes many values: a second one cancels */
    size_t end;             /* multi: bytes consumed when the value ended */
    int busy;               /* the context: a call is using it */
    uintptr_t owner;        /* the context: that call's frame address */
    char *err;
    size_t errlen;
    frame fr[MAX_FRAMES];
} dec;

#define REF_NULL(d)    ((d)->refs)
#define REF_ARRAY(d)   ((d)->refs + 1)
#define REF_BINARY(d)  ((d)->refs + 2)
#define REF_SET(d)     ((d)->refs + 3)
#define REF_DECIMAL(d) ((d)->refs + 4)
#define REF_VALUEKEY(d) ((d)->refs + 5) /* the string "value" */
#define NSLOTS (DDBK_LUA_NREFS + 1)      /* what push_context pushes above T */

static void release(dec *d)
{
    if (d->h) {
        yajl_free(d->h);
        d->h = NULL;
    }
    free(d->scratch);
    d->scratch = NULL;
    d->scratch_cap = 0;
}

static int guard_gc(lua_State *L)
{
    release((dec *)lua_touserdata(L, 1));
    return 0;
}

/* --------------------------------------------------------------- errors */



/* The path of the value being parsed, in Lua terms (Responses.T[2].a). The
 * pending keys are on the Lua stack; AV wrappers add nothing, since in Lua
 * the wrapper is the value. */
static size_t path_format(dec *d, char *dst, size_t cap)
{
    size_t len = 0;
    int any = 0;
    for (int i = 0; i < d->nframes; i++) {
        const frame *f = &d->fr[i];
        if (f->kind == F_ARR) {
            len = ddbk__path_add(dst, len, cap, "[%d]", f->n + 1);
            any = 1;
        } else if (f->kind == F_OBJ && f->haskey) {
            size_t kl;
            const char *k = lua_tolstring(d->L, f->tidx + 1, &kl);
            len = ddbk__path_key(dst, len, cap, k, kl, !any);
            any = 1;
        }
    }
    if (!any)
        len = ddbk__path_add(dst, len, cap, "(top level)");
    return len;
}

/* Records a malformed-response error and returns 0, which makes yajl stop. */
static int fail(dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(dec *d, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->failed = 1;
    if (d->errlen) {
        size_t len = ddbk__path_add(d->err, 0, d->errlen, "malformed response: ");
        len += path_format(d, d->err + len, d->errlen - len);
        ddbk__path_add(d->err, len, d->errlen, ": %s", msg);
    }
    return 0;
}

static int wrong_shape(dec *d, int c, const char *got)
{
    return fail(d, "expected %s, got %s", ctx_expects[c], got);
}

/* ------------------------------------------------------------- building */

static int cur_ctx(const dec *d)
{
    return d->nframes ? d->fr[d->nframes - 1].next : d->top;
}

/* Contexts that read a scalar as plain JSON. */
static int lenient(int c)
{
    return c < C_TOP;
}

/* The finished value on the stack top goes into its container. */
static int emit(dec *d)
{
    if (!d->nframes) {
        d->done = 1;
        if (d->multi)
            d->end = yajl_get_bytes_consumed(d->h);
        return 1;
    }
    frame *f = &d->fr[d->nframes - 1];
    switch (f->kind) {
    case F_OBJ:
        lua_rawset(d->L, f->tidx);
        f->haskey = 0;
        break;
    case F_ARR:
        if (f->n == INT_MAX)
            return fail(d, "array too long");
        lua_rawseti(d->L, f->tidx, ++f->n);
        break;
    default: /* F_WRAP: the value stays on the stack until the '}' */
        f->state = 2;
        break;
    }
    return 1;
}

static frame *push_frame(dec *d, enum fkind kind)
{
    if (d->nframes >= MAX_FRAMES) {
        fail(d, "nesting deeper than %d levels", MAX_TABLES);
        return NULL;
    }
    frame *f = &d->fr[d->nframes++];
    memset(f, 0, sizeof *f);
    f->kind = (unsigned char)kind;
    return f;
}

/* A new table (with metatable mt, when nonzero) and its frame. */
static frame *push_table(dec *d, enum fkind kind, int mt, int narr, int nrec)
{
    lua_State *L = d->L;
    if (d->ntables >= MAX_TABLES) {
        fail(d, "nesting deeper than %d levels", MAX_TABLES);
        return NULL;
    }
    /* table, key, value, and what a value needs while it is built (a
     * decimal: table, text, metatable) */
    if (!lua_checkstack(L, 8)) {
        fail(d, "Lua stack exhausted");
        return NULL;
    }
    frame *f = push_frame(d, kind);
    if (!f)
        return NULL;
    lua_createtable(L, narr, nrec);
    if (mt) {
        lua_pushvalue(L, mt);
        lua_setmetatable(L, -2);
    }
    f->tidx = lua_gettop(L);
    d->ntables++;
    return f;
}

static void push_plain_number(dec *d, const char *s, size_t n)
{
#if DDBK_HAS_INTEGERS
    int64_t v;
    if (ddbk__parse_int64(s, n, &v)) {
        lua_pushinteger(d->L, (lua_Integer)v);
        return;
    }
#endif
    int ok;
    lua_pushnumber(d->L, (lua_Number)ddbk__strtod(d->L, s, n, &ok));
}

static int push_binary(dec *d, const unsigned char *s, size_t n)
{
    lua_State *L = d->L;
    unsigned char small[768];
    unsigned char *buf = small;

    if (n > INT_MAX) {
        int pad;
        if (!ddbk__b64_valid(s, n, &pad))
            return fail(d, "B is not valid base64");
        return fail(d, "B is too long");
    }
    size_t outn = n / 4 * 3;
    if (outn > sizeof small) {
        if (outn > d->scratch_cap) {
            unsigned char *p = realloc(d->scratch, outn);
            if (!p)
                return fail(d, "out of memory");
            d->scratch = p;
            d->scratch_cap = outn;
        }
        buf = d->scratch;
    }
    long r = ddbk__b64_decode(s, n, buf);
    if (r < 0)
        return fail(d, "B is not valid base64");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, REF_VALUEKEY(d));
    lua_pushlstring(L, (const char *)buf, (size_t)r);
    lua_rawset(L, -3);
    lua_pushvalue(L, REF_BINARY(d));
    lua_setmetatable(L, -2);
    return 1;
}

/* ------------------------------------------------------------ callbacks */

/* A value starting after the top-level one completed: only a handle taking
 * multiple values gets here. Cancels the parse without a message; the
 * caller decodes the input again to report it as before. */
#define SECOND_VALUE(d) ((d)->done && !(d)->nframes)

static int cb_null(void *ctx)
{
    dec *d = ctx;
    if (SECOND_VALUE(d))
        return 0;
    int c = cur_ctx(d);
    if (!lenient(c))
        return wrong_shape(d, c, "null");
    lua_pushvalue(d->L, REF_NULL(d));
    return emit(d);
}

static int cb_boolean(void *ctx, int b)
{
    dec *d = ctx;
    if (SECOND_VALUE(d))
        return 0;
    int c = cur_ctx(d);
    if (c == C_AV_NULL) {
        if (!b)
            return wrong_shape(d, c, "false");
        lua_pushvalue(d->L, REF_NULL(d));
    } else if (c == C_AV_BOOL || lenient(c)) {
        lua_pushboolean(d->L, b);
    } else {
        return wrong_shape(d, c, "a boolean");
    }
    return emit(d);
}

static int cb_number(void *ctx, const char *s, size_t n)
{
    dec *d = ctx;
    if (SECOND_VALUE(d))
        return 0;
    int c = cur_ctx(d);
    if (!lenient(c))
        return wrong_shape(d, c, "a number");
    push_plain_number(d, s, n);
    return emit(d);
}

static int cb_string(void *ctx, const unsigned char *us, size_t n)
{
    dec *d = ctx;
    const char *s = (const char *)us;
    if (SECOND_VALUE(d))
        return 0;
    int c = cur_ctx(d);
    switch (c) {
    case C_AV_S:
    case C_EL_S:
        lua_pushlstring(d->L, s, n);
        break;
    case C_AV_N:
    case C_EL_N:
        if (!ddbk__num_valid(s, n, NULL)) {
            char q[48];
            size_t shown = n > 40 ? 40 : n;
            size_t j = 0;
            for (size_t i = 0; i < shown; i++) /* printable only */
                q[j++] = us[i] >= 0x20 && us[i] < 0x7f && us[i] != '"' ? s[i] : '?';
            q[j] = '\0';
            return fail(d, "N is not a number: \"%s%s\"", q, shown < n ? "..." : "");
        }
        ddbk__push_n(d->L, s, n, REF_DECIMAL(d));
        break;
    case C_AV_B:
    case C_EL_B:
        if (!push_binary(d, us, n))
            return 0;
        break;
    default:
        if (!lenient(c))
            return wrong_shape(d, c, "a string");
        lua_pushlstring(d->L, s, n);
        break;
    }
    return emit(d);
}

static int cb_start_map(void *ctx)
{
    dec *d = ctx;
    if (SECOND_VALUE(d))
        return 0;
    int c = cur_ctx(d);
    frame *f;

    if (c == C_AV) {
        /* {"S": "x"}: no table, the value will stand in for it */
        return push_frame(d, F_WRAP) != NULL;
    }
    if (c == C_AV_LIST || (c > C_ITEM && c != C_AV_M))
        return wrong_shape(d, c, "an object");
    /* an item has a few attributes: start with room for some (measured:
     * growing 0, 1, 2, 4 costs more than the slack) */
    int nrec = c == C_ITEM || c == C_AVMAP || c == C_AVMAP_LIST ? 4 : 0;
    if (!(f = push_table(d, F_OBJ, 0, 0, nrec)))
        return 0;
    switch (c) {
    case C_AVMAP:
    case C_AVMAP_LIST: /* object-shaped: a Streams record's Keys */
    case C_ITEM:
    case C_AV_M:
        f->mode = OM_AV;
        break;
    case C_BY_TABLE:
        f->mode = OM_NAMED;
        f->child = C_PLAIN;
        break;
    case C_BY_TABLE_ITEMS:
        f->mode = OM_NAMED;
        f->child = C_AVMAP_LIST;
        break;
    case C_BY_ATTR_VALUE:
        f->mode = OM_NAMED;
        f->child = C_PLAIN_VAV;
        break;
    default: /* C_PLAIN, C_PLAIN_VAV, C_RAW, C_TOP */
        f->mode = OM_FIELDS;
        f->vav = c == C_PLAIN_VAV;
        f->raw = c == C_RAW;
        break;
    }
    return 1;
}

static int cb_start_array(void *ctx)
{
    dec *d = ctx;
    if (SECOND_VALUE(d))
        return 0;
    int c = cur_ctx(d);
    int mt = 0, elem;

    switch (c) {
    case C_AVMAP_LIST: elem = C_ITEM; break;
    case C_AV_LIST: elem = C_AV; break;
    case C_AV_L: elem = C_AV; mt = REF_ARRAY(d); break;
    case C_AV_SS: elem = C_EL_S; mt = REF_SET(d); break;
    case C_AV_NS: elem = C_EL_N; mt = REF_SET(d); break;
    case C_AV_BS: elem = C_EL_B; mt = REF_SET(d); break;
    case C_RAW: elem = C_RAW; break;
    case C_BY_TABLE_ITEMS: elem = C_PLAIN; break;
    default:
        if (!lenient(c))
            return wrong_shape(d, c, "an array");
        elem = C_PLAIN;
        break;
    }
    frame *f = push_table(d, F_ARR, mt, c == C_AV_L ? 4 : 0, 0); /* as for items */
    if (!f)
        return 0;
    f->next = (unsigned char)elem;
    return 1;
}

/* The context a field's rule gives its value. */
static int rule_ctx(int rule)
{
    switch (rule) {
    case DDBK_FIELD_AVMAP: return C_AVMAP;
    case DDBK_FIELD_AVMAP_LIST: return C_AVMAP_LIST;
    case DDBK_FIELD_AV_LIST: return C_AV_LIST;
    case DDBK_FIELD_BY_TABLE:
    case DDBK_FIELD_BY_ATTR: return C_BY_TABLE;
    case DDBK_FIELD_BY_TABLE_ITEMS: return C_BY_TABLE_ITEMS;
    case DDBK_FIELD_BY_ATTR_VALUE: return C_BY_ATTR_VALUE;
    case DDBK_FIELD_AV: return C_AV;
    case DDBK_FIELD_PLAIN_VALUE_AV: return C_PLAIN_VAV;
    case DDBK_FIELD_RAW: return C_RAW;
    default: return C_PLAIN;
    }
}

/* The AttributeValue type named by a wrapper's key, or -1. */
static int av_type(const char *k, size_t n)
{
    switch (n) {
    case 1:
        switch (k[0]) {
        case 'S': return C_AV_S;
        case 'N': return C_AV_N;
        case 'B': return C_AV_B;
        case 'M': return C_AV_M;
        case 'L': return C_AV_L;
        default: return -1;
        }
    case 2:
        if (k[1] != 'S')
            return -1;
        switch (k[0]) {
        case 'S': return C_AV_SS;
        case 'N': return C_AV_NS;
        case 'B': return C_AV_BS;
        default: return -1;
        }
    case 4:
        if (memcmp(k, "BOOL", 4) == 0) return C_AV_BOOL;
        if (memcmp(k, "NULL", 4) == 0) return C_AV_NULL;
        return -1;
    default:
        return -1;
    }
}

static int cb_map_key(void *ctx, const unsigned char *uk, size_t n)
{
    dec *d = ctx;
    const char *k = (const char *)uk;
    frame *f = &d->fr[d->nframes - 1];

    if (f->kind == F_WRAP) {
        char q[48];
        int t;
        if (f->state != 0)
            return fail(d, "AttributeValue has more than one type");
        if ((t = av_type(k, n)) < 0) {
            size_t shown = n > 40 ? 40 : n, j = 0;
            for (size_t i = 0; i < shown; i++)
                q[j++] = uk[i] >= 0x20 && uk[i] < 0x7f && uk[i] != '"' ? k[i] : '?';
            q[j] = '\0';
            return fail(d, "unknown AttributeValue type \"%s%s\"", q,
                        shown < n ? "..." : "");
        }
        f->next = (unsigned char)t;
        f->state = 1;
        return 1;
    }
    /* F_OBJ (yajl sends keys only inside objects) */
    lua_pushlstring(d->L, k, n);
    f->haskey = 1;
    switch (f->mode) {
    case OM_AV:
        f->next = C_AV;
        break;
    case OM_NAMED:
        f->next = f->child;
        break;
    default:
        if (f->raw)
            f->next = C_RAW;
        else if (f->vav && n == 5 && memcmp(k, "Value", 5) == 0)
            f->next = C_AV;
        else
            f->next = (unsigned char)rule_ctx(ddbk__field_rule(k, n));
        break;
    }
    return 1;
}

static int cb_end_map(void *ctx)
{
    dec *d = ctx;
    frame *f = &d->fr[d->nframes - 1];
    if (f->kind == F_WRAP) {
        if (f->state != 2)
            return fail(d, "empty AttributeValue");
    } else {
        d->ntables--;
    }
    d->nframes--;
    return emit(d);
}

static int cb_end_array(void *ctx)
{
    dec *d = ctx;
    d->ntables--;
    d->nframes--;
    return emit(d);
}

static const yajl_callbacks callbacks = {
    cb_null,  cb_boolean,     NULL, /* integer: cb_number has the text */
    NULL,     cb_number,      cb_string,
    cb_start_map, cb_map_key, cb_end_map,
    cb_start_array, cb_end_array,
};

/* ------------------------------------------------------------ the entry */

/* registry[&context_key]: a table holding the NSLOTS values the decoder
 * reads by stack index, then the context userdata. */
static const char context_key = 0;

/* Pushes a new dec userdata whose __gc frees its handle and scratch. */
static dec *new_dec(lua_State *L)
{
    dec *d = lua_newuserdata(L, sizeof *d);
    d->h = NULL;
    d->scratch = NULL;
    d->scratch_cap = 0;
    d->multi = d->busy = 0;
    d->owner = 0;
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return d;
}

/* Pushes the context table and, above it, the NSLOTS values (null, the
 * metatables, "value"); returns the context. Needs NSLOTS + 3 stack slots. */
static dec *push_context(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&context_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    int t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, NSLOTS + 1, 0);
        ddbk__lua_push_refs(L);
        lua_pushliteral(L, "value");
        for (int i = NSLOTS; i >= 1; i--)
            lua_rawseti(L, t, i);
        new_dec(L);
        lua_rawseti(L, t, NSLOTS + 1);
        lua_pushlightuserdata(L, (void *)&context_key);
        lua_pushvalue(L, t);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    for (int i = 1; i <= NSLOTS + 1; i++)
        lua_rawgeti(L, t, i);
    dec *ctx = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ctx;
}

/* JSON whitespace, as yajl's lexer skips it. */
static int only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case ' ': case '\t': case '\n': case '\r': case '\v': case '\f':
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* Parses json with d (its handle allocated when it has none), the decoder
 * slots at stack index refs. Returns 0 with the value on the stack top; -1
 * with the message in err; or -2 (d->multi only) when the input is not one
 * complete value and a single-value handle must say why. */
static int run(dec *d, lua_State *L, int refs, int top, const char *json, size_t len,
               char *err, size_t errlen)
{
    d->L = L;
    d->refs = refs;
    d->top = top;
    d->nframes = d->ntables = d->done = d->failed = 0;
    d->err = err;
    d->errlen = errlen;

    if (!d->h) {
        d->h = yajl_alloc(&callbacks, NULL, d);
        if (!d->h) {
            if (errlen)
                snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (d->multi)
            yajl_config(d->h, yajl_allow_multiple_values, 1);
    }
    yajl_status st = yajl_parse(d->h, (const unsigned char *)json, len);
    size_t at = yajl_get_bytes_consumed(d->h);
    int done_in_text = d->done;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(d->h);
        at = len;
    }
    if (st == yajl_status_ok && d->done) {
        /* The handle may take the next value only if its lexer holds
         * nothing: yajl accepts a value followed by the start of an
         * unterminated string ("{} \"") and keeps that start buffered.
         * Only whitespace after the value leaves the lexer empty. (A value
         * that ended in yajl_complete_parse was a number ended by its " ".) */
        if (d->multi && done_in_text && !only_space(json + d->end, len - d->end))
            d->multi = 0; /* tells the caller to drop the handle */
        return 0;
    }
    if (d->failed)
        return -1;
    /* A multi-value handle reads "" and "{} x" differently: from a handle
     * that has not seen a value yet the message would not be the same. */
    if (d->multi)
        return -2;
    if (errlen) {
        unsigned char *m = yajl_get_error(d->h, 0, NULL, 0);
        const char *txt = m ? (const char *)m : "parse error";
        size_t tl = strlen(txt);
        while (tl && (txt[tl - 1] == '\n' || txt[tl - 1] == ' '))
            tl--;
        snprintf(err, errlen, "malformed JSON at byte %zu: %.*s", at, (int)tl, txt);
        if (m)
            yajl_free_error(d->h, m);
    }
    return -1;
}

/* ddbk_lua_decode_response and ddbk_lua_decode_result, top being the
 * context of the top-level value. */
static int decode(lua_State *L, int top, const char *json, size_t len, char *err,
                  size_t errlen)
{
    int base = lua_gettop(L);
    int rc = -2;

    if (!lua_checkstack(L, NSLOTS + 10)) {
        if (errlen)
            snprintf(err, errlen, "Lua stack exhausted");
        return -1;
    }
    dec *ctx = push_context(L);

    /* The context is busy while a call parses with it. A call finding it
     * busy is either nested in that one (a finalizer run by an allocation
     * in a callback decoding too), and then runs deeper on the C stack, at
     * a lower frame address; or that call was unwound mid-parse by a memory
     * error, which left the handle in an unknown state: certain only when
     * this frame is not deeper, then the handle is dropped. Otherwise this
     * call uses a handle of its own, as every call used to. */
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    if (ctx->busy && here >= ctx->owner) {
        release(ctx);
        ctx->busy = 0;
    }
    if (!ctx->busy) {
        ctx->busy = 1;
        ctx->owner = here;
        ctx->multi = 1;
        rc = run(ctx, L, base + 2, top, json, len, err, errlen);
        ctx->busy = 0;
        if ((rc != 0 || !ctx->multi || len > KEEP_MAX) && ctx->h) {
            yajl_free(ctx->h);
            ctx->h = NULL;
        }
        if (ctx->scratch_cap > KEEP_MAX) {
            free(ctx->scratch);
            ctx->scratch = NULL;
            ctx->scratch_cap = 0;
        }
    }
    if (rc == -2) {
        lua_settop(L, base + 1 + NSLOTS);
        dec *g = new_dec(L);
        rc = run(g, L, base + 2, top, json, len, err, errlen);
        release(g);
    }
    if (rc == 0) {
        lua_replace(L, base + 1); /* the value takes the context's slot */
        lua_settop(L, base + 1);
        return 0;
    }
    lua_settop(L, base);
    return -1;
}

int ddbk_lua_decode_response(lua_State *L, const char *json, size_t len,
                             char *err, size_t errlen)
{
    return decode(L, C_PLAIN, json, len, err, errlen);
}

int ddbk_lua_decode_result(lua_State *L, const char *json, size_t len,
                           char *err, size_t errlen)
{
    return decode(L, C_TOP, json, len, err, errlen);
}
