/*
 * The floor for `make bench`: what a plain libcurl keep-alive loop costs.
 * One easy handle, one pre-built GetItem request (headers, a fixed
 * Authorization line and the body are built once, before the loop), posted
 * N times; the response body is collected into a reused buffer and the
 * status must be 200 every time. Nothing is signed, encoded or decoded: any
 * client has to do at least this much per request.
 *
 *   floor ENDPOINT TARGET N WARMUP [EXPECT]
 *
 * EXPECT (default "p1" in quotes, the bench item's key) must occur in the
 * last response body; the "nginx-cache" server answers with another item,
 * so run.sh passes "CACHE#h1" there. The request stays the same.
 *
 * Prints one line:
 *   RESULT target=TARGET client=floor n=N cpu_us_per_req=X req_per_s=Y
 * where CPU is getrusage(RUSAGE_SELF) user+sys over the measured loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>

typedef struct body {
    char *data;
    size_t len, cap;
} body;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    body *b = ud;
    size_t len = size * n;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

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

static int one(CURL *h, body *b, long i)
{
    long status = 0;
    b->len = 0;
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "floor: request %ld: %s\n", i, curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 || b->len == 0) {
        fprintf(stderr, "floor: request %ld: HTTP %ld: %.200s\n", i, status,
                b->data ? b->data : "");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: floor ENDPOINT TARGET N WARMUP [EXPECT]\n");
        return 2;
    }
    const char *endpoint = argv[1], *target = argv[2];
    long n = atol(argv[3]), warmup = atol(argv[4]);
    const char *expect = argc == 6 ? argv[5] : "\"p1\"";
    if (n <= 0 || warmup < 0) {
        fprintf(stderr, "floor: N must be > 0 and WARMUP >= 0\n");
        return 2;
    }

    static const char req_body[] = "{\"TableName\":\"bench\",\"Key\":{\"pk\":{\"S\":\"p1\"}}}";
    char url[512];
    snprintf(url, sizeof url, "%s/", endpoint);

    /* The headers ddbkit sends, with a signature made up once: DynamoDB
     * Local checks the Authorization line's shape, not its signature. */
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/x-amz-json-1.0");
    hdrs = curl_slist_append(hdrs, "X-Amz-Target: DynamoDB_20120810.GetItem");
    hdrs = curl_slist_append(hdrs, "X-Amz-Date: 20240101T000000Z");
    hdrs = curl_slist_append(hdrs,
        "Authorization: AWS4-HMAC-SHA256 "
        "Credential=ddbkitbench/20240101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
        "Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (!hdrs) {
        fprintf(stderr, "floor: out of memory\n");
        return 1;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "floor: curl_easy_init failed\n");
        return 1;
    }
    body b = { 0 };
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req_body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(sizeof req_body - 1));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);

    for (long i = 0; i < warmup; i++)
        if (one(h, &b, i) != 0)
            return 1;

    double c0 = cpu_us(), w0 = wall_us();
    for (long i = 0; i < n; i++)
        if (one(h, &b, i) != 0)
            return 1;
    double c1 = cpu_us(), w1 = wall_us();

    if (!strstr(b.data, expect)) {
        fprintf(stderr, "floor: unexpected response: %.200s\n", b.data);
        return 1;
    }
    printf("RESULT target=%s client=floor n=%ld cpu_us_per_req=%.2f req_per_s=%.0f\n",
           target, n, (c1 - c0) / (double)n, (double)n / ((w1 - w0) / 1e6));

    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    free(b.data);
    curl_global_cleanup();
    return 0;
}
