/*
 * The AWS "standard" retry mode: which errors to retry, how long to wait
 * (full jitter: a uniform draw in [0, min(cap, base * 2^(attempt-1)))), and
 * a per-client retry quota that stops a struggling service from being
 * hammered by every caller's retries at once.
 */
#include <stdint.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

#define RETRY_COST 5
#define TIMEOUT_COST 10
#define NO_RETRY_INCREMENT 1

long ddbk_retry_decide(ddbk_client *c, const ddbk_error *err, int attempt,
                       double rnd)
{
    if (!err->retryable || attempt >= c->max_attempts)
        return -1;
    if (c->quota_max > 0) {
        int cost = err->timeout ? TIMEOUT_COST : RETRY_COST;
        if (c->quota < cost) {
            ddbk__stats_quota_exhausted(c);
            return -1;
        }
        c->quota -= cost;
    }

    double ceiling = (double)c->base_delay_ms;
    for (int i = 1; i < attempt && ceiling < (double)c->max_backoff_ms; i++)
        ceiling *= 2;
    if (ceiling > (double)c->max_backoff_ms)
        ceiling = (double)c->max_backoff_ms;
    if (rnd < 0)
        rnd = 0;
    if (rnd >= 1)
        rnd = 0.999999;
    long delay = (long)(rnd * ceiling);
    ddbk__stats_retry_delay(c, delay);
    return delay;
}

void ddbk_retry_success(ddbk_client *c, int retried, int last_was_timeout)
{
    if (c->quota_max <= 0)
        return;
    int refund = !retried ? NO_RETRY_INCREMENT
                          : (last_was_timeout ? TIMEOUT_COST : RETRY_COST);
    c->quota += refund;
    if (c->quota > c->quota_max)
        c->quota = c->quota_max;
}

#ifdef DDBK_UNITTEST
double (*ddbk__test_random)(void);
#endif

/* xorshift64*, seeded once per thread from the kernel: jitter needs to
 * differ between processes, not to be unpredictable. */
double ddbk_random(void)
{
    static _Thread_local uint64_t state;
#ifdef DDBK_UNITTEST
    if (ddbk__test_random)
        return ddbk__test_random();
#endif
    if (state == 0) {
        if (getrandom(&state, sizeof state, 0) != sizeof state || state == 0)
            state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1;
    }
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (double)((state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}
