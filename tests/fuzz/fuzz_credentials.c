/*
 * libFuzzer target for the credential chain (engine/credentials.c over
 * engine/ini.c) and the first move of the fetch machine on what it
 * resolves (engine/cred_fetch.c): the input is cut at 0xff bytes into a
 * shared credentials file, a shared config file, and the values of
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,
 * AWS_REGION, AWS_CONTAINER_CREDENTIALS_FULL_URI,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_ENDPOINT_URL_STS, AWS_ROLE_ARN and
 * AWS_CONTAINER_AUTHORIZATION_TOKEN; the first two bytes say which of
 * those are set and whether the config names the profile or gives the keys
 * itself. The files are written to a private temporary folder (removed at
 * exit), so the whole chain runs as in a host: profiles with role chains,
 * loops, credential_source, web identity, credential_process and SSO.
 *
 * What must hold: resolution succeeds with a plan of 1 to
 * DDBK__PLAN_MAX_STEPS steps or fails with a message, never crashes;
 * nothing in a plan that goes into a request (keys, URLs, ARNs, names)
 * holds a control character, nor do its id, its skipped list or any
 * message; a copy of a plan is equal in its strings; the machine's first
 * action on it is well-formed (an HTTP request with clean headers, an
 * EXEC with an argv, DONE for static keys, or FAILED with a message).
 *
 *   make build/fuzz/fuzz_credentials
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "creds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], cred_path[128], conf_path[128];

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        abort();
    if (n > 0 && fwrite(p, 1, n, f) != n)
        abort();
    fclose(f);
}

static int clean(const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* The next piece (up to a 0xff byte or the end) as a C string, or NULL when
 * the input ran out. */
static char *piece(const uint8_t **p, const uint8_t *end, size_t *len)
{
    if (*p > end)
        return NULL;
    const uint8_t *stop = memchr(*p, 0xff, (size_t)(end - *p));
    if (stop == NULL)
        stop = end;
    *len = (size_t)(stop - *p);
    char *s = malloc(*len + 1);
    if (s == NULL)
        abort();
    memcpy(s, *p, *len);
    s[*len] = '\0';
    *p = stop + 1;
    return s;
}

static void remove_dir(void)
{
    unlink(cred_path);
    unlink(conf_path);
    rmdir(dir);
}

/* The machine draws its backoff jitter here (engine/retry.c, which would
 * bring the client in); the first action never waits. */
double ddbk_random(void)
{
    return 0.5;
}

static void check_clean(const char *s)
{
    if (!clean(s))
        abort();
}

static void check_plan(const ddbk__plan *plan)
{
    if (plan->nsteps < 1 || plan->nsteps > DDBK__PLAN_MAX_STEPS || plan->provider[0] == '\0')
        abort();
    check_clean(plan->id);
    check_clean(plan->skipped);
    for (int i = 0; i < plan->nsteps; i++) {
        const ddbk__step *st = &plan->steps[i];
        check_clean(st->profile);
        check_clean(st->keys.access_key_id);
        check_clean(st->keys.secret_access_key);
        check_clean(st->keys.session_token);
        check_clean(st->role_arn);
        check_clean(st->session_name);
        check_clean(st->external_id);
        check_clean(st->sts_url);
        check_clean(st->url);
        check_clean(st->auth_token);
        check_clean(st->imds_endpoint);
        check_clean(st->sso_start_url);
        check_clean(st->sso_url);
        check_clean(st->sso_account_id);
        check_clean(st->sso_role_name);
        if (st->kind == DDBK__STEP_STATIC &&
            (st->keys.access_key_id == NULL || st->keys.secret_access_key == NULL))
            abort();
        /* Assume-role hops follow a source; they never start a plan. */
        if (st->kind == DDBK__STEP_ASSUME_ROLE && i == 0)
            abort();
    }
}

/* The machine's first move on the plan: well-formed whatever it is. */
static void first_action(const ddbk__plan *plan)
{
    ddbk_error err;
    ddbk__fetch *f = ddbk__fetch_new(plan, 1800000000, &err);
    ddbk__action a;
    ddbk__fetched out;

    if (f == NULL)
        abort();
    ddbk__fetch_next(f, 1800000000, &a);
    switch (a.kind) {
    case DDBK__ACT_HTTP:
        check_clean(a.url);
        for (int i = 0; i < a.nheaders; i++) {
            check_clean(a.header_name[i]);
            check_clean(a.header_value[i]);
        }
        break;
    case DDBK__ACT_EXEC:
        if (a.argv == NULL || a.argv[0] == NULL)
            abort();
        break;
    case DDBK__ACT_DONE:
        if (ddbk__fetch_result(f, &out, &err) != 0)
            abort();
        ddbk__fetched_wipe(&out);
        break;
    case DDBK__ACT_FAILED:
        if (ddbk__fetch_result(f, &out, &err) != -1 || err.code[0] == '\0' ||
            !clean(err.message))
            abort();
        break;
    case DDBK__ACT_SLEEP:
        abort(); /* nothing failed yet */
    }
    ddbk__fetch_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"};
    static const char *const more[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                       "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                       "AWS_ENDPOINT_URL_STS", "AWS_ROLE_ARN",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN"};
    enum { NPARTS = 12 };
    char *parts[NPARTS] = {0};
    size_t lens[NPARTS] = {0};

    if (dir[0] == '\0') {
        /* tmpfs when there is one: two files are written per input. */
        snprintf(dir, sizeof dir, "%s/ddbk_fuzz_cred_XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (mkdtemp(dir) == NULL)
            abort();
        snprintf(cred_path, sizeof cred_path, "%s/credentials", dir);
        snprintf(conf_path, sizeof conf_path, "%s/config", dir);
        atexit(remove_dir);
        setenv("HOME", dir, 1);
        setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
        setenv("AWS_CONFIG_FILE", conf_path, 1);
        unsetenv("AWS_DEFAULT_REGION");
        unsetenv("AWS_ENDPOINT_URL");
        unsetenv("AWS_ENDPOINT_URL_SSO");
        unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        /* A token file that does not exist: web identity fails at its
         * first move, without reading anything the input did not make. */
        setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/ddbk-fuzz-token", 1);
    }
    if (size < 2)
        return 0;
    unsigned mode = data[0], mode2 = data[1];
    const uint8_t *p = data + 2, *end = data + size;
    for (int i = 0; i < NPARTS; i++)
        parts[i] = piece(&p, end, &lens[i]);

    write_file(cred_path, (const uint8_t *)(parts[0] ? parts[0] : ""), lens[0]);
    write_file(conf_path, (const uint8_t *)(parts[1] ? parts[1] : ""), lens[1]);
    for (int i = 0; i < 5; i++) {
        /* Bit i set and the piece there: the variable is set (an empty
         * value counts as unset, as the engine reads it). */
        if ((mode & (1u << i)) && parts[2 + i] != NULL)
            setenv(vars[i], parts[2 + i], 1);
        else
            unsetenv(vars[i]);
    }
    for (int i = 0; i < 5; i++) {
        if ((mode2 & (1u << i)) && parts[7 + i] != NULL)
            setenv(more[i], parts[7 + i], 1);
        else
            unsetenv(more[i]);
    }
    if (mode2 & 0x20)
        setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    else
        unsetenv("AWS_EC2_METADATA_DISABLED");

    ddbk_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (mode & 0x20)
        cfg.profile = parts[5]; /* the profile named in code */
    if (mode & 0x40) {          /* explicit keys, from the env pieces */
        cfg.access_key_id = parts[2];
        cfg.secret_access_key = parts[3];
        cfg.session_token = parts[4];
    }
    if (mode & 0x80)
        cfg.region = parts[6];
    cfg.credentials_from_host = (mode2 & 0xc0) == 0xc0;

    static ddbk__plan plan, copy;
    ddbk_error err;
    ddbk_error_clear(&err);
    if (ddbk__plan_resolve(&cfg, &plan, &err) == 0) {
        check_plan(&plan);
        if (ddbk__plan_copy(&plan, &copy) != 0)
            abort();
        check_plan(&copy);
        if (strcmp(copy.id, plan.id) != 0 || copy.nsteps != plan.nsteps)
            abort();
        ddbk__plan_wipe(&plan);
        first_action(&copy);
        ddbk__plan_wipe(&copy);
    } else {
        if (err.code[0] == '\0' || !clean(err.message) || plan.nsteps != 0)
            abort();
    }

    ddbk_credentials creds;
    ddbk_error_clear(&err);
    if (ddbk__credentials_resolve(&cfg, &creds, &err) == 0) {
        if (creds.access_key_id == NULL || creds.secret_access_key == NULL ||
            !clean(creds.access_key_id) || !clean(creds.secret_access_key) ||
            !clean(creds.session_token))
            abort();
        ddbk__credentials_wipe(&creds);
    } else {
        if (err.code[0] == '\0' || !clean(err.message))
            abort();
        if (creds.access_key_id != NULL || creds.secret_access_key != NULL ||
            creds.session_token != NULL)
            abort();
    }

    char region[64];
    int rr = ddbk__region_resolve(&cfg, region, sizeof region);
    if (rr == 0 && strlen(region) >= sizeof region)
        abort();
    if (rr != 0 && rr != -1 && rr != -2)
        abort();

    for (int i = 0; i < NPARTS; i++)
        free(parts[i]);
    return 0;
}
