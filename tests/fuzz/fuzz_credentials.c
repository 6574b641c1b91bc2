/*
 * libFuzzer target for credential and region resolution
 * (engine/credentials.c over engine/ini.c): the input is cut at 0xff bytes
 * into a shared credentials file, a shared config file, and the values of
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE
 * and AWS_REGION; the first byte says which of those are set and whether the
 * config names the profile or gives the keys itself. The files are written
 * to a private temporary folder (removed at exit), so the whole chain runs
 * as in a host.
 *
 * What must hold: resolution succeeds or fails with a message, never
 * crashes; resolved credentials hold no control character (they go into
 * request headers as they are); no message holds one either.
 *
 *   make build/fuzz/fuzz_credentials
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"};
    char *parts[7] = {0};
    size_t lens[7] = {0};

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
    }
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    for (int i = 0; i < 7; i++)
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

    ddbk_credentials creds;
    ddbk_error err;
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

    for (int i = 0; i < 7; i++)
        free(parts[i]);
    return 0;
}
