/*
 * Reading a lock item out of a response: the "Attributes" of a write, the
 * "Item" of a failed condition (ALL_OLD) or of a read-back.
 *
 * A yajl callback parser that keeps the few attributes the lock needs and
 * nothing else: no tree, so a body nested a million levels deep costs
 * neither a million allocations nor a recursive free (yajl_tree_free
 * recurses per level and overflowed the stack). It counts the open
 * containers and refuses the body past DDBK__MAX_JSON_DEPTH, the Lua
 * decoder's own limit, so whatever the engine refuses here the binding
 * would refuse too.
 *
 * Where the server repeats a name (a field, an attribute, an
 * AttributeValue's type), the first one counts: what a reader sees does not
 * depend on how far it reads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "internal.h"

/* The attributes read, and the type each must have. */
enum { A_OWNER, A_RVN, A_RELEASED, A_FENCE, A_EXPIRES, A_LEASE, A_COUNT };
static const struct {
    const char *name;
    const char *type;
} attrs[A_COUNT] = {
    [A_OWNER] = { "lockOwner", "S" },  [A_RVN] = { "lockRvn", "S" },
    [A_RELEASED] = { "releasedRvn", "S" }, [A_FENCE] = { "fence", "N" },
    [A_EXPIRES] = { "expiresAt", "N" }, [A_LEASE] = { "leaseMs", "N" },
};

enum { V_STRING, V_MAP, V_OTHER };

typedef struct reader {
    const char *field;
    size_t field_len;
    ddbk__lock_item *out;
    int depth;         /* containers open */
    int bad;           /* not the shape of a response */
    int key_is_field;  /* depth 1: the last key was `field`, not yet seen */
    int in_item;       /* depth 2 is the item */
    int attr;          /* depth 2: the attribute the last key named, or -1 */
    int cur;           /* depth 3: the attribute whose value this is, or -1 */
    int av_type;       /* depth 3: the last key was cur's type */
    unsigned got;      /* attributes already read (bit per A_*) */
} reader;

/* An integer as DynamoDB's N text carries it; anything else (a fraction,
 * an exponent, out of range) reads as absent. */
static int parse_int(const unsigned char *v, size_t n, int64_t *out)
{
    char text[32];
    char *end;
    if (n == 0 || n >= sizeof text)
        return 0;
    memcpy(text, v, n);
    text[n] = '\0';
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || !((text[0] >= '0' && text[0] <= '9') || text[0] == '-'))
        return 0;
    *out = (int64_t)x;
    return 1;
}

/* A string into a fixed buffer; one that does not fit, or holds a NUL, is
 * kept cut and marked so that it never equals anything. */
static void take_string(char *dst, size_t cap, const unsigned char *v, size_t n,
                        ddbk__lock_item *out, unsigned bit)
{
    size_t k = n < cap - 1 ? n : cap - 1;
    if (n >= cap || memchr(v, '\0', n) != NULL)
        out->cut |= bit;
    memcpy(dst, v, k);
    dst[k] = '\0';
}

static void store(reader *r, const unsigned char *v, size_t n)
{
    ddbk__lock_item *o = r->out;
    int64_t x;
    switch (r->cur) {
    case A_OWNER:
        take_string(o->owner, sizeof o->owner, v, n, o, DDBK__LOCK_CUT_OWNER);
        break;
    case A_RVN:
        take_string(o->rvn, sizeof o->rvn, v, n, o, DDBK__LOCK_CUT_RVN);
        break;
    case A_RELEASED:
        take_string(o->released, sizeof o->released, v, n, o, DDBK__LOCK_CUT_RELEASED);
        break;
    case A_FENCE:
        if (parse_int(v, n, &x)) {
            o->fence = x;
            o->have_fence = 1;
        }
        break;
    case A_EXPIRES:
        if (parse_int(v, n, &x))
            o->expires_at = x;
        break;
    default: /* A_LEASE */
        if (parse_int(v, n, &x) && x >= 0 && x <= (int64_t)0x7fffffff)
            o->lease_ms = (long)x;
        break;
    }
    r->got |= 1u << r->cur;
}

/* Every value (a scalar or the start of a container) at the current depth,
 * before a container counts itself. 0 stops the parse. */
static int value(reader *r, int kind, const unsigned char *v, size_t n)
{
    switch (r->depth) {
    case 0:
        if (kind != V_MAP)
            r->bad = 1; /* a response is an object */
        break;
    case 1:
        if (r->key_is_field) {
            if (kind != V_MAP)
                r->bad = 1; /* "Item": true is no item */
            else
                r->in_item = 1, r->out->exists = 1;
            r->key_is_field = 0;
        }
        break;
    case 2:
        if (r->in_item && r->attr >= 0 && kind == V_MAP)
            r->cur = r->attr;
        r->attr = -1;
        break;
    case 3:
        if (r->av_type && kind == V_STRING && !(r->got & (1u << r->cur)))
            store(r, v, n);
        r->av_type = 0;
        break;
    default:
        break;
    }
    return !r->bad;
}

static int open_container(reader *r, int kind)
{
    if (!value(r, kind, NULL, 0))
        return 0;
    if (++r->depth > DDBK__MAX_JSON_DEPTH) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static int on_start_map(void *ctx) { return open_container(ctx, V_MAP); }
static int on_start_array(void *ctx) { return open_container(ctx, V_OTHER); }

static int on_end(void *ctx)
{
    reader *r = ctx;
    if (r->depth == 3)
        r->cur = -1, r->av_type = 0;
    else if (r->depth == 2)
        r->in_item = 0, r->attr = -1;
    r->depth--;
    return 1;
}

static int on_key(void *ctx, const unsigned char *k, size_t n)
{
    reader *r = ctx;
    if (r->depth == 1) {
        r->key_is_field = !r->out->exists && n == r->field_len && memcmp(k, r->field, n) == 0;
    } else if (r->depth == 2 && r->in_item) {
        r->attr = -1;
        for (int i = 0; i < A_COUNT; i++)
            if (strlen(attrs[i].name) == n && memcmp(k, attrs[i].name, n) == 0 &&
                !(r->got & (1u << i)))
                r->attr = i;
    } else if (r->depth == 3 && r->cur >= 0) {
        r->av_type = n == 1 && k[0] == attrs[r->cur].type[0];
    }
    return 1;
}

static int on_string(void *ctx, const unsigned char *v, size_t n)
{
    return value(ctx, V_STRING, v, n);
}
static int on_null(void *ctx) { return value(ctx, V_OTHER, NULL, 0); }
static int on_bool(void *ctx, int b) { (void)b; return value(ctx, V_OTHER, NULL, 0); }
static int on_number(void *ctx, const char *v, size_t n)
{
    (void)v;
    (void)n;
    return value(ctx, V_OTHER, NULL, 0);
}

static const yajl_callbacks item_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

int ddbk__lock_item_read(const char *body, size_t len, const char *field,
                         ddbk__lock_item *out)
{
    reader r;

    memset(out, 0, sizeof *out);
    if (!body || !len)
        return -1;
    memset(&r, 0, sizeof r);
    r.field = field;
    r.field_len = strlen(field);
    r.out = out;
    r.attr = r.cur = -1;
    yajl_handle h = yajl_alloc(&item_callbacks, NULL, &r);
    if (!h)
        return -1;
    int ok = yajl_parse(h, (const unsigned char *)body, len) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok && !r.bad;
    yajl_free(h);
    if (!ok) {
        memset(out, 0, sizeof *out); /* half a body is no item */
        return -1;
    }
    return out->exists;
}
