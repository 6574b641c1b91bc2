/*
 * ddbkit's C API in `make bench`: one client (ddbk_client_new), then
 * ddbk_call("GetItem", a pre-built JSON body) N times. The engine signs
 * every request (SigV4), sends it over its keep-alive handle and classifies
 * the response; the body must hold the item every time.
 *
 *   bench_c ENDPOINT TARGET N WARMUP
 *
 * Prints one line:
 *   RESULT target=TARGET client=ddbkit-c n=N cpu_us_per_req=X req_per_s=Y
 * where CPU is getrusage(RUSAGE_SELF) user+sys over the measured loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ddbkit.h"

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static const char req_body[] = "{\"TableName\":\"bench\",\"Key\":{\"pk\":{\"S\":\"p1\"}}}";

static int one(ddbk_client *c, ddbk_response *resp, long i)
{
    ddbk_error err;
    if (ddbk_call(c, "GetItem", req_body, sizeof req_body - 1, resp, &err) != 0) {
        fprintf(stderr, "bench_c: request %ld: %s (HTTP %ld): %s\n", i, err.code,
                err.status, err.message);
        return -1;
    }
    if (resp->status != 200 || resp->body.len == 0) {
        fprintf(stderr, "bench_c: request %ld: HTTP %ld\n", i, resp->status);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_c ENDPOINT TARGET N WARMUP\n");
        return 2;
    }
    const char *endpoint = argv[1], *target = argv[2];
    long n = atol(argv[3]), warmup = atol(argv[4]);
    if (n <= 0 || warmup < 0) {
        fprintf(stderr, "bench_c: N must be > 0 and WARMUP >= 0\n");
        return 2;
    }

    ddbk_config cfg;
    ddbk_error err;
    ddbk_config_init(&cfg);
    cfg.region = "us-east-1";
    cfg.endpoint = endpoint;
    cfg.access_key_id = "ddbkitbench";
    cfg.secret_access_key = "x";
    ddbk_client *c = ddbk_client_new(&cfg, &err);
    if (!c) {
        fprintf(stderr, "bench_c: ddbk_client_new: %s: %s\n", err.code, err.message);
        return 1;
    }
    ddbk_response resp;
    ddbk_response_init(&resp);

    for (long i = 0; i < warmup; i++)
        if (one(c, &resp, i) != 0)
            return 1;

    double c0 = cpu_us(), w0 = wall_us();
    for (long i = 0; i < n; i++)
        if (one(c, &resp, i) != 0)
            return 1;
    double c1 = cpu_us(), w1 = wall_us();

    if (!strstr(resp.body.data, "\"p1\"")) {
        fprintf(stderr, "bench_c: unexpected response: %.200s\n", resp.body.data);
        return 1;
    }
    printf("RESULT target=%s client=ddbkit-c n=%ld cpu_us_per_req=%.2f req_per_s=%.0f\n",
           target, n, (c1 - c0) / (double)n, (double)n / ((w1 - w0) / 1e6));

    ddbk_response_free(&resp);
    ddbk_client_free(c);
    return 0;
}
