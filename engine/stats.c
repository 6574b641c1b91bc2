/*
 * Per-client counters. Exact counts (benchmarks and tests rely on them to
 * count DynamoDB requests per logical operation) and a latency histogram.
 * Nothing here ever holds a credential.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

double ddbk__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Named slots fill a fixed table; the last slot, named "other", collects
 * every name past the table's size, so memory stays bounded whatever the
 * host sends. */
/* A stored name is the given one cut to the field's size; comparing only
 * that much makes a long name find its own slot again (this runs on every
 * request, so it must not copy). */
static int same_name(const char *stored, size_t cap, const char *name)
{
    return strncmp(stored, name, cap - 1) == 0;
}

static ddbk_op_stats *op_slot(ddbk_stats *s, const char *op)
{
    for (int i = 0; i < s->nops; i++)
        if (same_name(s->ops[i].op, sizeof s->ops[i].op, op))
            return &s->ops[i];
    ddbk_op_stats *o = &s->ops[s->nops < DDBK_STATS_MAX_OPS ? s->nops++ : DDBK_STATS_MAX_OPS - 1];
    ddbk__copy(o->op, sizeof o->op, s->nops < DDBK_STATS_MAX_OPS ? op : "other");
    return o;
}

static ddbk_code_stats *code_slot(ddbk_stats *s, const char *code)
{
    for (int i = 0; i < s->ncodes; i++)
        if (same_name(s->codes[i].code, sizeof s->codes[i].code, code))
            return &s->codes[i];
    ddbk_code_stats *k = &s->codes[s->ncodes < DDBK_STATS_MAX_CODES ? s->ncodes++ : DDBK_STATS_MAX_CODES - 1];
    ddbk__copy(k->code, sizeof k->code, s->ncodes < DDBK_STATS_MAX_CODES ? code : "other");
    return k;
}

static void count_code(ddbk_stats *s, const char *code)
{
    code_slot(s, code)->count++;
}

static int lat_bucket(double us)
{
    if (us < 1)
        return 0;
    int e;
    double m = frexp(us, &e); /* us = m * 2^e, m in [0.5, 1) */
    int b = (e - 1) * DDBK_LAT_SUB + (int)((m - 0.5) * 2 * DDBK_LAT_SUB);
    return b < DDBK_LAT_BUCKETS ? b : DDBK_LAT_BUCKETS - 1;
}

/* The middle of a bucket: within half a bucket (at most 1/16 = 6.25%) of
 * any value that fell in it. */
static double lat_bucket_mid(int b)
{
    int e = b / DDBK_LAT_SUB + 1;
    double m = 0.5 + ((double)(b % DDBK_LAT_SUB) + 0.5) / (2.0 * DDBK_LAT_SUB);
    return ldexp(m, e);
}

void ddbk_stats_record_attempt(ddbk_client *c, const char *op, size_t out_bytes,
                               size_t in_bytes, double latency_us)
{
    ddbk_stats *s = &c->stats.pub;
    if (!isfinite(latency_us) || latency_us < 0) /* from a host: NaN, inf, negative */
        latency_us = 0;
    op_slot(s, op)->requests++;
    s->requests++;
    s->bytes_out += out_bytes;
    s->bytes_in += in_bytes;
    if (s->latency_count == 0 || latency_us < s->latency_min_us)
        s->latency_min_us = latency_us;
    if (latency_us > s->latency_max_us)
        s->latency_max_us = latency_us;
    s->latency_count++;
    c->stats.lat_sum_us += latency_us;
    c->stats.lat_hist[lat_bucket(latency_us)]++;
}

void ddbk_stats_record_call(ddbk_client *c, const char *op, int retries,
                            const ddbk_error *final_err)
{
    ddbk_stats *s = &c->stats.pub;
    ddbk_op_stats *o = op_slot(s, op);
    o->calls++;
    o->retries += (uint64_t)retries;
    s->retries += (uint64_t)retries;
    if (final_err) {
        o->errors++;
        s->errors++;
        count_code(s, final_err->code);
    }
}

void ddbk__stats_retry_delay(ddbk_client *c, long delay_ms)
{
    c->stats.pub.retry_delay_ms_total += (uint64_t)delay_ms;
}

void ddbk__stats_quota_exhausted(ddbk_client *c)
{
    c->stats.pub.quota_exhausted++;
}

static double percentile(const ddbk_stats_state *st, double q)
{
    uint64_t total = st->pub.latency_count, seen = 0;
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank == 0)
        rank = 1;
    for (int b = 0; b < DDBK_LAT_BUCKETS; b++) {
        seen += st->lat_hist[b];
        if (seen >= rank) {
            double v = lat_bucket_mid(b);
            /* Never report beyond what was actually seen. */
            if (v > st->pub.latency_max_us)
                v = st->pub.latency_max_us;
            return v < st->pub.latency_min_us ? st->pub.latency_min_us : v;
        }
    }
    return st->pub.latency_max_us;
}

void ddbk_stats_get(const ddbk_client *c, ddbk_stats *out)
{
    *out = c->stats.pub;
    if (out->latency_count) {
        out->latency_mean_us = c->stats.lat_sum_us / (double)out->latency_count;
        out->latency_p50_us = percentile(&c->stats, 0.50);
        out->latency_p90_us = percentile(&c->stats, 0.90);
        out->latency_p99_us = percentile(&c->stats, 0.99);
    }
}

void ddbk_stats_reset(ddbk_client *c)
{
    memset(&c->stats, 0, sizeof c->stats);
}

void ddbk__stats_add(ddbk_client *dst, const ddbk_client *src)
{
    ddbk_stats *d = &dst->stats.pub;
    const ddbk_stats *s = &src->stats.pub;
    for (int i = 0; i < s->nops; i++) {
        ddbk_op_stats *o = op_slot(d, s->ops[i].op);
        o->calls += s->ops[i].calls;
        o->requests += s->ops[i].requests;
        o->retries += s->ops[i].retries;
        o->errors += s->ops[i].errors;
    }
    for (int i = 0; i < s->ncodes; i++)
        code_slot(d, s->codes[i].code)->count += s->codes[i].count;
    d->requests += s->requests;
    d->retries += s->retries;
    d->errors += s->errors;
    d->bytes_out += s->bytes_out;
    d->bytes_in += s->bytes_in;
    d->retry_delay_ms_total += s->retry_delay_ms_total;
    d->quota_exhausted += s->quota_exhausted;
    if (s->latency_count) {
        if (d->latency_count == 0 || s->latency_min_us < d->latency_min_us)
            d->latency_min_us = s->latency_min_us;
        if (s->latency_max_us > d->latency_max_us)
            d->latency_max_us = s->latency_max_us;
        d->latency_count += s->latency_count;
        dst->stats.lat_sum_us += src->stats.lat_sum_us;
        for (int b = 0; b < DDBK_LAT_BUCKETS; b++)
            dst->stats.lat_hist[b] += src->stats.lat_hist[b];
    }
}
