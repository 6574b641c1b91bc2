/*
 * Where credentials and the region come from, in the order the AWS SDKs use:
 *
 *   credentials: explicit config -> environment -> shared credentials file
 *                -> shared config file
 *   region:      explicit config -> AWS_REGION -> AWS_DEFAULT_REGION
 *                -> the profile's region in the config file
 *
 * Only static keys are read. Profiles that get credentials another way
 * (role_arn, sso_*, credential_process) are reported as having no keys rather
 * than half-supported. A profile named in the config (not by AWS_PROFILE)
 * also skips the environment keys, as the SDKs do: naming a profile in code
 * is a stronger statement than whatever the shell exported.
 *
 * Secrets live in heap copies that ddbk__credentials_wipe() scrubs; the file
 * text they were read from is scrubbed before it is freed. Error messages
 * name files and profiles, never values.
 *
 * A credential goes into the Authorization and X-Amz-Security-Token headers
 * as it is, so one holding a control character (CR and LF end a header and
 * begin another) is refused, naming where it came from; so is a profile
 * name holding one, since messages show it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "internal.h"

/* Real config files are a few KB; anything near this is not one. */
#define MAX_FILE ((size_t)1 << 20)

#define KEY_ID "aws_access_key_id"
#define KEY_SECRET "aws_secret_access_key"
#define KEY_TOKEN "aws_session_token"

/* The contents of one shared file, or why there are none. */
typedef struct file_text {
    char path[1024];
    char *data; /* NULL when the file is missing, unreadable or too big */
    size_t len;
    int too_big;
} file_text;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

static int nonempty(const char *s)
{
    return s != NULL && *s != '\0';
}

static int has_control(const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* 0 when none of the three has a control character; else -1 with err
 * naming the first one that does (names[i] says where values[i] is from). */
static int refuse_control(const char *const values[3], const char *const names[3],
                          const char *where, ddbk_error *err)
{
    for (int i = 0; i < 3; i++)
        if (has_control(values[i])) {
            ddbk_error_set(err, "InvalidArgument", 0,
                           "%s%s contains a control character (refused: it would go "
                           "into a request header)",
                           names[i], where);
            return -1;
        }
    return 0;
}

/* AWS_xxx_FILE (with a leading "~/" expanded, as the CLI does) or
 * $HOME/.aws/<name>. Leaves path empty when there is no HOME to go by. */
static void file_path(char *path, size_t size, const char *var,
                      const char *name)
{
    const char *v = env(var), *home = env("HOME");
    int n;

    path[0] = '\0';
    if (v != NULL) {
        if (v[0] == '~' && v[1] == '/' && home != NULL)
            n = snprintf(path, size, "%s%s", home, v + 1);
        else
            n = snprintf(path, size, "%s", v);
    } else if (home != NULL) {
        n = snprintf(path, size, "%s/.aws/%s", home, name);
    } else {
        return;
    }
    if (n < 0 || (size_t)n >= size)
        path[0] = '\0'; /* a truncated path would name some other file */
}

static void file_wipe(file_text *f)
{
    if (f->data != NULL) {
        OPENSSL_cleanse(f->data, f->len);
        free(f->data);
    }
    f->data = NULL;
    f->len = 0;
}

/* Reads the whole file when it is a regular file of at most MAX_FILE bytes.
 * A missing file is not an error: most machines have neither. */
static void file_load(file_text *f, const char *var, const char *name)
{
    struct stat st;
    size_t got = 0;
    int fd;

    f->data = NULL;
    f->len = 0;
    f->too_big = 0;
    file_path(f->path, sizeof f->path, var, name);
    if (f->path[0] == '\0')
        return;
    /* O_NONBLOCK: a FIFO planted at the path must not hang the caller; it
     * changes nothing for the regular files we go on to read. */
    fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    if ((unsigned long long)st.st_size > MAX_FILE) {
        f->too_big = 1;
        goto out;
    }
    /* One byte more than fstat promised, to notice a file that grew. */
    f->data = malloc((size_t)st.st_size + 1);
    if (f->data == NULL)
        goto out;
    while (got < (size_t)st.st_size + 1) {
        ssize_t r = read(fd, f->data + got, (size_t)st.st_size + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got > (size_t)st.st_size) {
        /* Being rewritten as we read: a half-written key is worse than
         * none, so the file counts as unreadable. */
        f->len = got;
        file_wipe(f);
        goto out;
    }
    f->len = got;
out:
    close(fd);
}

/* A heap copy of a value found in `f`; the scratch it passed through is
 * scrubbed. Returns NULL when the key is absent or empty (or on OOM, which
 * the caller reports as such via *oom). */
static char *lookup_dup(const file_text *f, const char *section,
                        const char *key, int *oom)
{
    char *v, *copy = NULL;

    if (f->data == NULL)
        return NULL;
    /* A value can be no longer than the file, so it is never truncated. */
    v = malloc(f->len + 1);
    if (v == NULL) {
        *oom = 1;
        return NULL;
    }
    if (ddbk__ini_lookup(f->data, f->len, section, key, v, f->len + 1) &&
        v[0] != '\0') {
        copy = strdup(v);
        if (copy == NULL)
            *oom = 1;
    }
    OPENSSL_cleanse(v, f->len + 1);
    free(v);
    return copy;
}

static void wipe_str(char **s)
{
    if (*s != NULL) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

DDBK_HIDDEN void ddbk__credentials_wipe(ddbk_credentials *c)
{
    if (c == NULL)
        return;
    wipe_str(&c->access_key_id);
    wipe_str(&c->secret_access_key);
    wipe_str(&c->session_token);
    memset(c->source, 0, sizeof c->source);
}

/* Fills `out` from three strings (token optional). -1 only on OOM. */
static int take(ddbk_credentials *out, const char *id, const char *secret,
                const char *token, const char *source)
{
    out->access_key_id = strdup(id);
    out->secret_access_key = strdup(secret);
    out->session_token = nonempty(token) ? strdup(token) : NULL;
    if (out->access_key_id == NULL || out->secret_access_key == NULL ||
        (nonempty(token) && out->session_token == NULL)) {
        ddbk__credentials_wipe(out);
        return -1;
    }
    snprintf(out->source, sizeof out->source, "%s", source);
    return 0;
}

DDBK_HIDDEN int ddbk__credentials_copy(const ddbk_credentials *src, ddbk_credentials *out)
{
    memset(out, 0, sizeof *out);
    if (src->access_key_id == NULL || src->secret_access_key == NULL)
        return -1;
    return take(out, src->access_key_id, src->secret_access_key, src->session_token,
                src->source);
}

/* Looks in one file's section. 1 found (out filled), 0 not there, -1 OOM,
 * -2 a value holds a control character (err says which). */
static int from_file(const file_text *f, const char *section,
                     const char *profile, ddbk_credentials *out, ddbk_error *err)
{
    static const char *const names[3] = {KEY_ID, KEY_SECRET, KEY_TOKEN};
    char source[32], where[1400];
    int oom = 0;

    if (f->data == NULL)
        return 0;
    out->access_key_id = lookup_dup(f, section, KEY_ID, &oom);
    out->secret_access_key = lookup_dup(f, section, KEY_SECRET, &oom);
    out->session_token = lookup_dup(f, section, KEY_TOKEN, &oom);
    if (oom) {
        ddbk__credentials_wipe(out);
        return -1;
    }
    if (out->access_key_id == NULL || out->secret_access_key == NULL) {
        /* Half a key pair is no key pair; the next source may have both. */
        ddbk__credentials_wipe(out);
        return 0;
    }
    const char *const values[3] = {out->access_key_id, out->secret_access_key,
                                   out->session_token};
    snprintf(where, sizeof where, " of profile \"%s\" in %s", profile, f->path);
    if (refuse_control(values, names, where, err) != 0) {
        ddbk__credentials_wipe(out);
        return -2;
    }
    snprintf(source, sizeof source, "profile:%s", profile);
    memcpy(out->source, source, sizeof out->source);
    return 1;
}

/* The config file names profiles "profile <name>", except the default one,
 * which the SDKs accept as [default] or [profile default]. */
static void config_section(char *buf, size_t size, const char *profile, int alt)
{
    if (strcmp(profile, "default") == 0 && !alt)
        snprintf(buf, size, "default");
    else
        snprintf(buf, size, "profile %s", profile);
}

/* The profile from the config, else AWS_PROFILE, else "default". */
static const char *profile_name(const ddbk_config *cfg, int *explicit_profile)
{
    const char *p;

    *explicit_profile = cfg != NULL && nonempty(cfg->profile);
    if (*explicit_profile)
        return cfg->profile;
    p = env("AWS_PROFILE");
    return p != NULL ? p : "default";
}

static const char *shown(const file_text *f)
{
    return f->path[0] != '\0' ? f->path : "(no HOME)";
}

DDBK_HIDDEN int ddbk__credentials_resolve(const ddbk_config *cfg,
                                          ddbk_credentials *out,
                                          ddbk_error *err)
{
    file_text cred, conf;
    char section[300];
    const char *profile, *id, *secret;
    int explicit_profile, rc, i, exists = 0, partial_env = 0;

    memset(out, 0, sizeof *out);

    if (cfg != NULL && (nonempty(cfg->access_key_id) ||
                        nonempty(cfg->secret_access_key))) {
        if (!nonempty(cfg->access_key_id) || !nonempty(cfg->secret_access_key)) {
            /* Silently falling back to other keys would sign as someone
             * else than the caller asked for. */
            ddbk_error_set(err, "InvalidArgument", 0,
                           "config sets %s without %s",
                           nonempty(cfg->access_key_id) ? "access_key_id"
                                                        : "secret_access_key",
                           nonempty(cfg->access_key_id) ? "secret_access_key"
                                                        : "access_key_id");
            return -1;
        }
        const char *const values[3] = {cfg->access_key_id, cfg->secret_access_key,
                                       cfg->session_token};
        static const char *const names[3] = {"access_key_id", "secret_access_key",
                                             "session_token"};
        if (refuse_control(values, names, " from the config", err) != 0)
            return -1;
        if (take(out, cfg->access_key_id, cfg->secret_access_key,
                 cfg->session_token, "config") != 0)
            goto oom;
        return 0;
    }

    profile = profile_name(cfg, &explicit_profile);
    if (strlen(profile) > 255) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "profile name longer than 255 bytes");
        return -1;
    }
    if (has_control(profile)) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "profile name from %s contains a control character",
                       explicit_profile ? "the config" : "AWS_PROFILE");
        return -1;
    }

    if (!explicit_profile) {
        id = env("AWS_ACCESS_KEY_ID");
        secret = env("AWS_SECRET_ACCESS_KEY");
        if (id != NULL && secret != NULL) {
            const char *const values[3] = {id, secret, env("AWS_SESSION_TOKEN")};
            static const char *const names[3] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                 "AWS_SESSION_TOKEN"};
            if (refuse_control(values, names, " from the environment", err) != 0)
                return -1;
            if (take(out, id, secret, values[2], "environment") != 0)
                goto oom;
            return 0;
        }
        partial_env = (id != NULL) != (secret != NULL);
    }

    file_load(&cred, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    rc = from_file(&cred, profile, profile, out, err);
    if (rc == 0)
        exists = ddbk__ini_lookup(cred.data, cred.len, profile, NULL, NULL, 0);
    file_wipe(&cred);
    if (rc == -2)
        return -1;
    if (rc < 0)
        goto oom;
    if (rc > 0)
        return 0;

    file_load(&conf, "AWS_CONFIG_FILE", "config");
    for (i = 0; i < 2 && rc == 0; i++) {
        if (i == 1 && strcmp(profile, "default") != 0)
            break;
        config_section(section, sizeof section, profile, i);
        rc = from_file(&conf, section, profile, out, err);
        if (rc == 0)
            exists |= ddbk__ini_lookup(conf.data, conf.len, section, NULL, NULL, 0);
    }
    file_wipe(&conf);
    if (rc == -2)
        return -1;
    if (rc < 0)
        goto oom;
    if (rc > 0)
        return 0;

    if (cred.too_big || conf.too_big) {
        ddbk_error_set(err, "MissingCredentials", 0,
                       "%s is larger than 1 MiB; not read",
                       cred.too_big ? cred.path : conf.path);
    } else if (!exists && (explicit_profile || strcmp(profile, "default") != 0)) {
        ddbk_error_set(err, "MissingCredentials", 0,
                       "profile \"%s\" not found in %s or %s", profile,
                       shown(&cred), shown(&conf));
    } else if (exists) {
        ddbk_error_set(err, "MissingCredentials", 0,
                       "profile \"%s\" has no " KEY_ID " and " KEY_SECRET
                       " in %s or %s (only static keys are supported)",
                       profile, shown(&cred), shown(&conf));
    } else {
        ddbk_error_set(err, "MissingCredentials", 0,
                       "no credentials: none in the config, %s, "
                       "no profile \"%s\" in %s or %s",
                       partial_env ? "AWS_ACCESS_KEY_ID and "
                                     "AWS_SECRET_ACCESS_KEY must both be set"
                                   : "none in the environment",
                       profile, shown(&cred), shown(&conf));
    }
    return -1;

oom:
    ddbk__credentials_wipe(out);
    ddbk_error_set(err, "OutOfMemory", 0, "out of memory reading credentials");
    return -1;
}

DDBK_HIDDEN int ddbk__region_resolve(const ddbk_config *cfg, char *out,
                                     size_t outlen)
{
    const char *v = NULL, *profile;
    char section[300], buf[128];
    file_text conf;
    int explicit_profile, i, found = 0;

    if (out == NULL || outlen == 0)
        return -1;
    out[0] = '\0';

    if (cfg != NULL && nonempty(cfg->region))
        v = cfg->region;
    if (v == NULL)
        v = env("AWS_REGION");
    if (v == NULL)
        v = env("AWS_DEFAULT_REGION");
    if (v != NULL) {
        /* A cut region would name another endpoint: refuse instead. */
        if (strlen(v) >= outlen)
            return -2;
        memcpy(out, v, strlen(v) + 1);
        return 0;
    }

    profile = profile_name(cfg, &explicit_profile);
    if (strlen(profile) > 255)
        return -1;
    file_load(&conf, "AWS_CONFIG_FILE", "config");
    for (i = 0; i < 2 && !found; i++) {
        if (i == 1 && strcmp(profile, "default") != 0)
            break;
        config_section(section, sizeof section, profile, i);
        found = ddbk__ini_lookup(conf.data, conf.len, section, "region", buf,
                                 sizeof buf) &&
                buf[0] != '\0';
    }
    file_wipe(&conf);
    if (!found)
        return -1;
    if (strlen(buf) >= outlen || strlen(buf) >= sizeof buf - 1)
        return -2;
    memcpy(out, buf, strlen(buf) + 1);
    return 0;
}
