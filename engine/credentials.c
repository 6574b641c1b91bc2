/*
 * The credential chain: from the config, the environment and the shared
 * files, decides where credentials come from, in the AWS SDKs' order, and
 * writes it down as a plan (creds.h) for the fetch machine to run:
 *
 *   1 explicit config keys (or the host sets them: credentials_from_host)
 *   2 AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
 *   3 AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (IRSA)
 *   4 the profile (config, AWS_PROFILE or "default") of the shared files:
 *     role_arn with source_profile (chains) or credential_source, or with
 *     web_identity_token_file; static keys; credential_process; SSO
 *   5 the container endpoint (ECS, EKS Pod Identity)
 *   6 EC2 instance metadata, unless AWS_EC2_METADATA_DISABLED=true
 *
 * and the region the same way (config, AWS_REGION, AWS_DEFAULT_REGION, the
 * profile). No network I/O: only the shared files are read.
 *
 * A profile named in the config (not by AWS_PROFILE) also skips the
 * environment keys, as the SDKs do: naming a profile in code is a stronger
 * statement than whatever the shell exported.
 *
 * Secrets live in heap copies that the wipe functions scrub; the file text
 * they were read from is scrubbed before it is freed. Error messages name
 * files, profiles and variables, never values.
 *
 * A credential goes into the Authorization and X-Amz-Security-Token headers
 * as it is, so one holding a control character (CR and LF end a header and
 * begin another) is refused, naming where it came from; so is a profile
 * name, a URL or an ARN holding one, since messages and requests show them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "creds.h"

/* Real config files are a few KB; anything near this is not one. */
#define MAX_FILE ((size_t)1 << 20)

#define KEY_ID "aws_access_key_id"
#define KEY_SECRET "aws_secret_access_key"
#define KEY_TOKEN "aws_session_token"

#define IMDS_DEFAULT "http://169.254.169.254"
#define ECS_HOST "http://169.254.170.2"

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

/* A path as the CLI takes it: a leading "~/" is HOME. Empty when it does
 * not fit (a truncated path would name some other file). */
static void expand_path(char *path, size_t size, const char *v)
{
    const char *home = env("HOME");
    int n;

    if (v[0] == '~' && v[1] == '/' && home != NULL)
        n = snprintf(path, size, "%s%s", home, v + 1);
    else
        n = snprintf(path, size, "%s", v);
    if (n < 0 || (size_t)n >= size)
        path[0] = '\0';
}

/* AWS_xxx_FILE or $HOME/.aws/<name>. Leaves path empty when there is no
 * HOME to go by. */
static void file_path(char *path, size_t size, const char *var,
                      const char *name)
{
    const char *v = env(var), *home = env("HOME");
    int n;

    path[0] = '\0';
    if (v != NULL) {
        expand_path(path, size, v);
        return;
    }
    if (home == NULL)
        return;
    n = snprintf(path, size, "%s/.aws/%s", home, name);
    if (n < 0 || (size_t)n >= size)
        path[0] = '\0';
}

/* The contents of one shared file, or why there are none. */
typedef struct file_text {
    char path[1024];
    char *data; /* NULL when the file is missing, unreadable or too big */
    size_t len;
    int too_big;
} file_text;

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

/* ------------------------------------------------------------ the chain */

#define MAX_DEPTH DDBK__PLAN_MAX_STEPS

/* What one resolution reads once and passes around. */
typedef struct chain {
    const ddbk_config *cfg;
    ddbk__plan *plan;
    ddbk_error *err;
    file_text cred, conf;
    char sts_url[512], sts_region[64];
    ddbk_error sts_err;       /* a bad STS endpoint, reported if a role needs it */
    char visited[MAX_DEPTH + 1][256]; /* profiles on the source_profile path */
    int nvisited;
} chain;

static void skip(chain *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void skip(chain *ch, const char *fmt, ...)
{
    ddbk__plan *p = ch->plan;
    size_t len = strlen(p->skipped);
    va_list ap;

    if (len > 0 && len + 2 < sizeof p->skipped) {
        memcpy(p->skipped + len, "; ", 3);
        len += 2;
    }
    va_start(ap, fmt);
    vsnprintf(p->skipped + len, sizeof p->skipped - len, fmt, ap);
    va_end(ap);
}

static void oom(chain *ch)
{
    ddbk_error_set(ch->err, "OutOfMemory", 0, "out of memory reading credentials");
}

static const char *shown(const file_text *f)
{
    return f->path[0] != '\0' ? f->path : "(no HOME)";
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

static int profile_exists(const chain *ch, const char *profile)
{
    char section[300];

    if (ch->cred.data != NULL &&
        ddbk__ini_lookup(ch->cred.data, ch->cred.len, profile, NULL, NULL, 0))
        return 1;
    for (int i = 0; i < 2 && ch->conf.data != NULL; i++) {
        if (i == 1 && strcmp(profile, "default") != 0)
            break;
        config_section(section, sizeof section, profile, i);
        if (ddbk__ini_lookup(ch->conf.data, ch->conf.len, section, NULL, NULL, 0))
            return 1;
    }
    return 0;
}

/* A setting (not a secret) of `profile`: the credentials file's section
 * first, then the config file's. 1 found (copied to out), 0 absent or
 * empty, -1 too long for out or holding a control character (err names the
 * setting, the profile and the file). */
static int prop(chain *ch, const char *profile, const char *key, char *out, size_t cap)
{
    char section[300], buf[4200];
    const file_text *files[2] = {&ch->cred, &ch->conf};

    out[0] = '\0';
    for (int f = 0; f < 2; f++) {
        for (int i = 0; i < 2; i++) {
            if (f == 0 && i == 1)
                break;
            if (f == 1 && i == 1 && strcmp(profile, "default") != 0)
                break;
            if (f == 0)
                snprintf(section, sizeof section, "%s", profile);
            else
                config_section(section, sizeof section, profile, i);
            if (files[f]->data == NULL ||
                !ddbk__ini_lookup(files[f]->data, files[f]->len, section, key, buf, sizeof buf) ||
                buf[0] == '\0')
                continue;
            if (strlen(buf) >= cap || strlen(buf) >= sizeof buf - 1) {
                ddbk_error_set(ch->err, "InvalidArgument", 0,
                               "%s of profile \"%s\" in %s is longer than %zu bytes", key,
                               profile, files[f]->path, cap - 1);
                return -1;
            }
            if (has_control(buf)) {
                ddbk_error_set(ch->err, "InvalidArgument", 0,
                               "%s of profile \"%s\" in %s contains a control character", key,
                               profile, files[f]->path);
                return -1;
            }
            memcpy(out, buf, strlen(buf) + 1);
            return 1;
        }
    }
    return 0;
}

/* Static keys of one file's section. 1 found (out filled), 0 not there
 * (half a pair is no pair: the next file may have both), -1 OOM, -2 a
 * value holds a control character (err says which). */
static int keys_in(const file_text *f, const char *section, const char *profile,
                   ddbk__fetched *out, ddbk_error *err)
{
    static const char *const names[3] = {KEY_ID, KEY_SECRET, KEY_TOKEN};
    char where[1400];
    int oom_ = 0;

    if (f->data == NULL)
        return 0;
    out->access_key_id = lookup_dup(f, section, KEY_ID, &oom_);
    out->secret_access_key = lookup_dup(f, section, KEY_SECRET, &oom_);
    out->session_token = lookup_dup(f, section, KEY_TOKEN, &oom_);
    if (oom_) {
        ddbk__fetched_wipe(out);
        return -1;
    }
    if (out->access_key_id == NULL || out->secret_access_key == NULL) {
        ddbk__fetched_wipe(out);
        return 0;
    }
    const char *const values[3] = {out->access_key_id, out->secret_access_key,
                                   out->session_token};
    snprintf(where, sizeof where, " of profile \"%s\" in %s", profile, f->path);
    if (refuse_control(values, names, where, err) != 0) {
        ddbk__fetched_wipe(out);
        return -2;
    }
    return 1;
}

/* The profile's static keys: the credentials file, then the config file. */
static int profile_keys(chain *ch, const char *profile, ddbk__fetched *out)
{
    char section[300];
    int rc = keys_in(&ch->cred, profile, profile, out, ch->err);

    for (int i = 0; i < 2 && rc == 0; i++) {
        if (i == 1 && strcmp(profile, "default") != 0)
            break;
        config_section(section, sizeof section, profile, i);
        rc = keys_in(&ch->conf, section, profile, out, ch->err);
    }
    if (rc == -1)
        oom(ch);
    return rc < 0 ? -1 : rc;
}

/* Fills out from three strings (token optional). -1 on OOM. */
static int keys_copy(ddbk__fetched *out, const char *id, const char *secret,
                     const char *token)
{
    memset(out, 0, sizeof *out);
    out->access_key_id = strdup(id);
    out->secret_access_key = strdup(secret);
    out->session_token = nonempty(token) ? strdup(token) : NULL;
    if (out->access_key_id == NULL || out->secret_access_key == NULL ||
        (nonempty(token) && out->session_token == NULL)) {
        ddbk__fetched_wipe(out);
        return -1;
    }
    return 0;
}

static ddbk__step *add_step(chain *ch, enum ddbk__step_kind kind, const char *profile)
{
    ddbk__plan *p = ch->plan;
    ddbk__step *s;

    if (p->nsteps >= DDBK__PLAN_MAX_STEPS) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "the role chain of profile \"%s\" is longer than %d steps",
                       profile ? profile : "", DDBK__PLAN_MAX_STEPS);
        return NULL;
    }
    s = &p->steps[p->nsteps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    ddbk__copy(s->profile, sizeof s->profile, profile);
    return s;
}

/* An http(s) URL without control characters, spaces, a query or a
 * fragment, that fits in cap with a "/" path when it had none. -1 with err
 * naming `what` otherwise. */
static int url_check(chain *ch, const char *what, const char *v, char *out, size_t cap,
                     int add_slash)
{
    const char *rest;

    if (strncmp(v, "https://", 8) == 0)
        rest = v + 8;
    else if (strncmp(v, "http://", 7) == 0)
        rest = v + 7;
    else
        goto bad;
    if (*rest == '\0' || *rest == '/' || has_control(v) || strpbrk(v, " ?#@") != NULL)
        goto bad;
    if (snprintf(out, cap, "%s%s", v, add_slash && strchr(rest, '/') == NULL ? "/" : "") >=
        (int)cap)
        goto bad;
    return 0;
bad:
    ddbk_error_set(ch->err, "InvalidArgument", 0,
                   "%s is not an http(s) URL without query, credentials or control "
                   "characters (or is too long)",
                   what);
    return -1;
}

/* A region goes into host names: letters, digits and dashes only. */
static int region_ok(const char *r)
{
    if (!nonempty(r) || strlen(r) >= 64)
        return 0;
    for (; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
            return 0;
    return 1;
}

/* Where STS is, decided once for every hop: AWS_ENDPOINT_URL_STS, else
 * AWS_ENDPOINT_URL, else the regional endpoint of the chain's region
 * (us-east-1 when none), as the SDKs now default. */
static int sts_where(chain *ch)
{
    char region[64];
    const char *v;

    if (ddbk__region_resolve(ch->cfg, region, sizeof region) != 0 || !region_ok(region))
        snprintf(region, sizeof region, "us-east-1");
    snprintf(ch->sts_region, sizeof ch->sts_region, "%s", region);
    snprintf(ch->sts_url, sizeof ch->sts_url, "https://sts.%s.amazonaws.com/", region);
    if ((v = env("AWS_ENDPOINT_URL_STS")) != NULL ||
        (v = env("AWS_ENDPOINT_URL")) != NULL) {
        /* Checked now, reported only when a role needs STS: a bad
         * AWS_ENDPOINT_URL does not stop static keys. */
        ddbk_error *keep = ch->err;
        ch->err = &ch->sts_err;
        if (url_check(ch, env("AWS_ENDPOINT_URL_STS") ? "AWS_ENDPOINT_URL_STS"
                                                      : "AWS_ENDPOINT_URL",
                      v, ch->sts_url, sizeof ch->sts_url, 1) != 0)
            ch->sts_url[0] = '\0';
        ch->err = keep;
    }
    return 0;
}

static int fill_role(chain *ch, ddbk__step *s, const char *role_arn, const char *session,
                     const char *external_id, const char *duration)
{
    if (ch->sts_url[0] == '\0') {
        *ch->err = ch->sts_err;
        return -1;
    }
    if (strlen(role_arn) >= sizeof s->role_arn || strlen(session) >= sizeof s->session_name ||
        strlen(external_id) >= sizeof s->external_id) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "role_arn, role_session_name or external_id%s%s%s is too long",
                       s->profile[0] ? " of profile \"" : "", s->profile,
                       s->profile[0] ? "\"" : "");
        return -1;
    }
    snprintf(s->role_arn, sizeof s->role_arn, "%s", role_arn);
    snprintf(s->session_name, sizeof s->session_name, "%s", session);
    snprintf(s->external_id, sizeof s->external_id, "%s", external_id);
    if (nonempty(duration)) {
        char *end;
        long d = strtol(duration, &end, 10);
        if (*end != '\0' || d < 900 || d > 43200) {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "duration_seconds of profile \"%s\" is not a number of seconds "
                           "from 900 to 43200",
                           s->profile);
            return -1;
        }
        s->duration_s = d;
    }
    snprintf(s->sts_url, sizeof s->sts_url, "%s", ch->sts_url);
    snprintf(s->sts_region, sizeof s->sts_region, "%s", ch->sts_region);
    return 0;
}

/* "127.x.y.z" (loopback as four decimal numbers). */
static int is_loopback_v4(const char *h)
{
    int parts = 0, digits = 0;

    if (strncmp(h, "127.", 4) != 0)
        return 0;
    for (; *h; h++) {
        if (*h == '.') {
            if (digits == 0 || digits > 3)
                return 0;
            parts++;
            digits = 0;
        } else if (*h >= '0' && *h <= '9') {
            digits++;
        } else {
            return 0;
        }
    }
    return parts == 3 && digits > 0 && digits <= 3;
}

/* The hosts AWS_CONTAINER_CREDENTIALS_FULL_URI may name over plain http,
 * as the SDKs allow: loopback, ECS's and EKS Pod Identity's link-local
 * agents. Anything else could hand the authorization token to a stranger. */
static int container_host_allowed(const char *url)
{
    char host[256];
    const char *h, *end;
    size_t n;

    if (strncmp(url, "https://", 8) == 0)
        return 1;
    if (strncmp(url, "http://", 7) != 0)
        return 0;
    h = url + 7;
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL)
            return 0;
        end++;
    } else {
        end = h + strcspn(h, ":/");
    }
    n = (size_t)(end - h);
    if (n == 0 || n >= sizeof host)
        return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    if (*end != '\0' && *end != ':' && *end != '/')
        return 0;
    return strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
           strcmp(host, "169.254.170.2") == 0 || strcmp(host, "169.254.170.23") == 0 ||
           strcasecmp(host, "[fd00:ec2::23]") == 0 || is_loopback_v4(host);
}

/* The container endpoint from the environment. 1 step added, 0 not set,
 * -1 error. */
static int container_step(chain *ch, const char *profile)
{
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *tf = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tok = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    char url[1024];
    ddbk__step *s;

    if (rel != NULL) {
        if (rel[0] != '/' || has_control(rel) || strchr(rel, ' ') != NULL ||
            snprintf(url, sizeof url, ECS_HOST "%s", rel) >= (int)sizeof url) {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a path (or is too "
                           "long)");
            return -1;
        }
    } else if (full != NULL) {
        if (has_control(full) || strchr(full, ' ') != NULL || strchr(full, '@') != NULL ||
            snprintf(url, sizeof url, "%s", full) >= (int)sizeof url ||
            (strncmp(full, "http://", 7) != 0 && strncmp(full, "https://", 8) != 0)) {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http(s) URL (or is "
                           "too long)");
            return -1;
        }
        if (!container_host_allowed(full)) {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "AWS_CONTAINER_CREDENTIALS_FULL_URI names a host that is not "
                           "allowed over http (loopback, 169.254.170.2, 169.254.170.23 or "
                           "[fd00:ec2::23]; https may name any)");
            return -1;
        }
    } else {
        return 0;
    }
    if (tf == NULL && tok != NULL && has_control(tok)) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "AWS_CONTAINER_AUTHORIZATION_TOKEN contains a control character");
        return -1;
    }
    if ((s = add_step(ch, DDBK__STEP_CONTAINER, profile)) == NULL)
        return -1;
    snprintf(s->url, sizeof s->url, "%s", url);
    /* The file wins, as in the SDKs: EKS Pod Identity rotates it. */
    if (tf != NULL) {
        expand_path(s->auth_token_file, sizeof s->auth_token_file, tf);
        if (s->auth_token_file[0] == '\0') {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is too long");
            return -1;
        }
    } else if (tok != NULL && (s->auth_token = strdup(tok)) == NULL) {
        oom(ch);
        return -1;
    }
    return 1;
}

static int imds_disabled(void)
{
    const char *v = env("AWS_EC2_METADATA_DISABLED");
    return v != NULL && strcasecmp(v, "true") == 0;
}

static int imds_step(chain *ch, const char *profile)
{
    const char *v = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    ddbk__step *s = add_step(ch, DDBK__STEP_IMDS, profile);
    size_t n;

    if (s == NULL)
        return -1;
    if (v == NULL) {
        snprintf(s->imds_endpoint, sizeof s->imds_endpoint, IMDS_DEFAULT);
        return 0;
    }
    if (url_check(ch, "AWS_EC2_METADATA_SERVICE_ENDPOINT", v, s->imds_endpoint,
                  sizeof s->imds_endpoint, 0) != 0)
        return -1;
    /* Paths are appended as "/latest/...". */
    n = strlen(s->imds_endpoint);
    while (n > 0 && s->imds_endpoint[n - 1] == '/')
        s->imds_endpoint[--n] = '\0';
    return 0;
}

static int env_static_step(chain *ch, const char *profile)
{
    const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
    static const char *const names[3] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                         "AWS_SESSION_TOKEN"};
    ddbk__step *s;

    if (id == NULL || secret == NULL)
        return 0;
    const char *const values[3] = {id, secret, env("AWS_SESSION_TOKEN")};
    if (refuse_control(values, names, " from the environment", ch->err) != 0)
        return -1;
    if ((s = add_step(ch, DDBK__STEP_STATIC, profile)) == NULL)
        return -1;
    if (keys_copy(&s->keys, id, secret, values[2]) != 0) {
        oom(ch);
        return -1;
    }
    return 1;
}

/* The SSO settings of a profile: an [sso-session NAME] section, or the
 * legacy sso_start_url / sso_region in the profile itself. */
static int sso_step(chain *ch, const char *profile, const char *session)
{
    ddbk__step *s = add_step(ch, DDBK__STEP_SSO, profile);
    const char *home = env("HOME"), *v;
    char section[300];

    if (s == NULL)
        return -1;
    if (nonempty(session)) {
        snprintf(s->sso_session, sizeof s->sso_session, "%s", session);
        snprintf(section, sizeof section, "sso-session %s", session);
        if (ch->conf.data == NULL ||
            !ddbk__ini_lookup(ch->conf.data, ch->conf.len, section, "sso_start_url",
                              s->sso_start_url, sizeof s->sso_start_url) ||
            !ddbk__ini_lookup(ch->conf.data, ch->conf.len, section, "sso_region",
                              s->sso_region, sizeof s->sso_region) ||
            s->sso_start_url[0] == '\0' || s->sso_region[0] == '\0') {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "[sso-session %s] of profile \"%s\" in %s lacks sso_start_url or "
                           "sso_region",
                           session, profile, shown(&ch->conf));
            return -1;
        }
        if (has_control(s->sso_start_url)) {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "sso_start_url of [sso-session %s] contains a control character",
                           session);
            return -1;
        }
    } else if (prop(ch, profile, "sso_start_url", s->sso_start_url,
                    sizeof s->sso_start_url) <= 0 ||
               prop(ch, profile, "sso_region", s->sso_region, sizeof s->sso_region) <= 0) {
        if (ch->err->code[0] == '\0')
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "profile \"%s\" lacks sso_start_url or sso_region", profile);
        return -1;
    }
    if (prop(ch, profile, "sso_account_id", s->sso_account_id, sizeof s->sso_account_id) <= 0 ||
        prop(ch, profile, "sso_role_name", s->sso_role_name, sizeof s->sso_role_name) <= 0) {
        if (ch->err->code[0] == '\0')
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "profile \"%s\" lacks sso_account_id or sso_role_name", profile);
        return -1;
    }
    if (!region_ok(s->sso_region)) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "sso_region of profile \"%s\" is not a region name", profile);
        return -1;
    }
    if ((v = env("AWS_ENDPOINT_URL_SSO")) != NULL) {
        if (url_check(ch, "AWS_ENDPOINT_URL_SSO", v, s->sso_url, sizeof s->sso_url, 0) != 0)
            return -1;
        size_t n = strlen(s->sso_url);
        while (n > 0 && s->sso_url[n - 1] == '/')
            s->sso_url[--n] = '\0';
    } else {
        snprintf(s->sso_url, sizeof s->sso_url, "https://portal.sso.%s.amazonaws.com",
                 s->sso_region);
    }
    if (home != NULL &&
        snprintf(s->sso_cache_dir, sizeof s->sso_cache_dir, "%s/.aws/sso/cache", home) >=
            (int)sizeof s->sso_cache_dir)
        s->sso_cache_dir[0] = '\0';
    return 1;
}

/* The session name of an assumed role: the profile's, else one chosen at
 * fetch ("" here). */
static int resolve_profile(chain *ch, const char *name, const char *from);

/* role_arn of `profile`, with what signs it. 1 steps added, -1 error. */
static int role_profile(chain *ch, const char *profile, const char *role_arn)
{
    char source[256], csrc[64], wit[1024], session[128], ext[1300], dur[32];
    ddbk__step *s;
    int rc;

    if (prop(ch, profile, "source_profile", source, sizeof source) < 0 ||
        prop(ch, profile, "credential_source", csrc, sizeof csrc) < 0 ||
        prop(ch, profile, "web_identity_token_file", wit, sizeof wit) < 0 ||
        prop(ch, profile, "role_session_name", session, sizeof session) < 0 ||
        prop(ch, profile, "external_id", ext, sizeof ext) < 0 ||
        prop(ch, profile, "duration_seconds", dur, sizeof dur) < 0)
        return -1;
    if (nonempty(source) && nonempty(csrc)) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "profile \"%s\" sets both source_profile and credential_source",
                       profile);
        return -1;
    }
    /* A source wins over web_identity_token_file, as in botocore. */
    if (nonempty(wit) && !nonempty(source) && !nonempty(csrc)) {
        if ((s = add_step(ch, DDBK__STEP_WEB_IDENTITY, profile)) == NULL)
            return -1;
        expand_path(s->token_file, sizeof s->token_file, wit);
        return fill_role(ch, s, role_arn, session, "", dur) == 0 ? 1 : -1;
    }
    if (nonempty(source)) {
        rc = resolve_profile(ch, source, profile);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "source_profile \"%s\" of profile \"%s\" has no credentials",
                           source, profile);
            return -1;
        }
    } else if (strcmp(csrc, "Environment") == 0) {
        rc = env_static_step(ch, "");
        if (rc == 0)
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "profile \"%s\": credential_source Environment, but "
                           "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set",
                           profile);
        if (rc <= 0)
            return -1;
    } else if (strcmp(csrc, "Ec2InstanceMetadata") == 0) {
        if (imds_step(ch, "") != 0)
            return -1;
    } else if (strcmp(csrc, "EcsContainer") == 0) {
        rc = container_step(ch, "");
        if (rc == 0)
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "profile \"%s\": credential_source EcsContainer, but "
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set",
                           profile);
        if (rc <= 0)
            return -1;
    } else if (nonempty(csrc)) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "credential_source of profile \"%s\" is not Environment, "
                       "Ec2InstanceMetadata or EcsContainer",
                       profile);
        return -1;
    } else {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "profile \"%s\" has role_arn but no source_profile, "
                       "credential_source or web_identity_token_file",
                       profile);
        return -1;
    }
    if ((s = add_step(ch, DDBK__STEP_ASSUME_ROLE, profile)) == NULL)
        return -1;
    return fill_role(ch, s, role_arn, session, ext, dur) == 0 ? 1 : -1;
}

/* Appends the steps that give `name`'s credentials. from: the profile whose
 * source_profile it is, NULL for the chosen profile. 1 steps added, 0 the
 * profile gives none (a clause for `skipped` written), -1 error. */
static int resolve_profile(chain *ch, const char *name, const char *from)
{
    char role_arn[2048], command[4096], session[256];
    ddbk__step *s;
    ddbk__fetched keys;
    int rc;

    memset(&keys, 0, sizeof keys);
    if (strlen(name) > 255 || has_control(name)) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "source_profile of profile \"%s\" is longer than 255 bytes or holds a "
                       "control character",
                       from ? from : "");
        return -1;
    }
    /* A source profile with static keys gives them, even when it has a
     * role_arn of its own: the SDKs' rule, which is also what lets a
     * profile be its own source_profile. */
    if (from != NULL) {
        rc = profile_keys(ch, name, &keys);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            if ((s = add_step(ch, DDBK__STEP_STATIC, name)) == NULL) {
                ddbk__fetched_wipe(&keys);
                return -1;
            }
            s->keys = keys;
            return 1;
        }
    }
    for (int i = 0; i < ch->nvisited; i++)
        if (strcmp(ch->visited[i], name) == 0) {
            char path[1024];
            size_t len = 0;
            path[0] = '\0';
            for (int j = i; j < ch->nvisited; j++)
                (void)(ddbk__cats(path, sizeof path, &len, ch->visited[j]) |
                       ddbk__cats(path, sizeof path, &len, " -> "));
            ddbk__cats(path, sizeof path, &len, name);
            ddbk_error_set(ch->err, "InvalidArgument", 0, "source_profile loop: %s", path);
            return -1;
        }
    if (ch->nvisited >= MAX_DEPTH) {
        ddbk_error_set(ch->err, "InvalidArgument", 0,
                       "the role chain of profile \"%s\" is longer than %d steps", name,
                       DDBK__PLAN_MAX_STEPS);
        return -1;
    }
    snprintf(ch->visited[ch->nvisited++], sizeof ch->visited[0], "%s", name);

    if (!profile_exists(ch, name)) {
        if (from != NULL) {
            ddbk_error_set(ch->err, "InvalidArgument", 0,
                           "source_profile \"%s\" of profile \"%s\" not found in %s or %s",
                           name, from, shown(&ch->cred), shown(&ch->conf));
            return -1;
        }
        return 0;
    }
    rc = prop(ch, name, "role_arn", role_arn, sizeof role_arn);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return role_profile(ch, name, role_arn);
    if (from == NULL) {
        rc = profile_keys(ch, name, &keys);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            if ((s = add_step(ch, DDBK__STEP_STATIC, name)) == NULL) {
                ddbk__fetched_wipe(&keys);
                return -1;
            }
            s->keys = keys;
            return 1;
        }
    }
    rc = prop(ch, name, "credential_process", command, sizeof command);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if ((s = add_step(ch, DDBK__STEP_PROCESS, name)) == NULL)
            return -1;
        snprintf(s->command, sizeof s->command, "%s", command);
        return 1;
    }
    if (prop(ch, name, "sso_session", session, sizeof session) < 0)
        return -1;
    if (nonempty(session))
        return sso_step(ch, name, session);
    if (prop(ch, name, "sso_start_url", command, sizeof command) < 0)
        return -1;
    if (nonempty(command))
        return sso_step(ch, name, NULL);
    return 0;
}

static const char *provider_of(const ddbk__step *s, const char *static_provider)
{
    switch (s->kind) {
    case DDBK__STEP_STATIC: return static_provider;
    case DDBK__STEP_HOST: return DDBK__PROV_HOST;
    case DDBK__STEP_WEB_IDENTITY: return DDBK__PROV_WEB_IDENTITY;
    case DDBK__STEP_ASSUME_ROLE: return DDBK__PROV_ASSUME_ROLE;
    case DDBK__STEP_PROCESS: return DDBK__PROV_PROCESS;
    case DDBK__STEP_SSO: return DDBK__PROV_SSO;
    case DDBK__STEP_CONTAINER: return DDBK__PROV_CONTAINER;
    case DDBK__STEP_IMDS: return DDBK__PROV_IMDS;
    }
    return "";
}

/* provider, profile and the one non-secret thing that tells two plans of
 * that provider apart. */
static void plan_name(ddbk__plan *p)
{
    const ddbk__step *s = &p->steps[p->nsteps - 1];
    const char *what = "";

    switch (s->kind) {
    case DDBK__STEP_WEB_IDENTITY:
    case DDBK__STEP_ASSUME_ROLE: what = s->role_arn; break;
    case DDBK__STEP_SSO: what = s->sso_role_name; break;
    case DDBK__STEP_CONTAINER: what = s->url; break;
    case DDBK__STEP_IMDS: what = s->imds_endpoint; break;
    default: break;
    }
    size_t len = 0;

    /* Cut when long: an id only has to be stable, and the role ARN's
     * account and name come first. */
    p->id[0] = '\0';
    (void)(ddbk__cats(p->id, sizeof p->id, &len, p->provider) |
           ddbk__cats(p->id, sizeof p->id, &len, "|") |
           ddbk__cats(p->id, sizeof p->id, &len, s->profile) |
           ddbk__cats(p->id, sizeof p->id, &len, "|"));
    ddbk__cat(p->id, sizeof p->id, &len, what, strnlen(what, sizeof p->id - 1 - len));
}

static int finish(chain *ch, const char *static_provider)
{
    ddbk__plan *p = ch->plan;

    snprintf(p->provider, sizeof p->provider, "%s",
             provider_of(&p->steps[p->nsteps - 1], static_provider));
    plan_name(p);
    return 0;
}

DDBK_HIDDEN void ddbk__plan_wipe(ddbk__plan *plan)
{
    if (plan == NULL)
        return;
    for (int i = 0; i < DDBK__PLAN_MAX_STEPS; i++) {
        ddbk__fetched_wipe(&plan->steps[i].keys);
        wipe_str(&plan->steps[i].auth_token);
    }
    OPENSSL_cleanse(plan, sizeof *plan);
}

DDBK_HIDDEN int ddbk__plan_copy(const ddbk__plan *src, ddbk__plan *dst)
{
    memcpy(dst, src, sizeof *dst);
    for (int i = 0; i < DDBK__PLAN_MAX_STEPS; i++) {
        const ddbk__step *s = &src->steps[i];
        ddbk__step *d = &dst->steps[i];
        memset(&d->keys, 0, sizeof d->keys);
        d->auth_token = NULL;
        if (s->keys.access_key_id != NULL &&
            keys_copy(&d->keys, s->keys.access_key_id, s->keys.secret_access_key,
                      s->keys.session_token) != 0)
            goto fail;
        d->keys.expires_at = s->keys.expires_at;
        if (s->auth_token != NULL && (d->auth_token = strdup(s->auth_token)) == NULL)
            goto fail;
    }
    return 0;
fail:
    for (int i = 0; i < DDBK__PLAN_MAX_STEPS; i++) {
        ddbk__fetched_wipe(&dst->steps[i].keys);
        wipe_str(&dst->steps[i].auth_token);
    }
    memset(dst, 0, sizeof *dst);
    return -1;
}

DDBK_HIDDEN int ddbk__plan_resolve(const ddbk_config *cfg, ddbk__plan *plan, ddbk_error *err)
{
    chain ch;
    const char *profile, *wit, *arn;
    ddbk__step *s;
    int explicit_profile, rc;

    memset(plan, 0, sizeof *plan);
    memset(&ch, 0, sizeof ch);
    ch.cfg = cfg;
    ch.plan = plan;
    ch.err = err;
    ddbk_error_clear(err);

    /* 1 the config's own keys, or the host's. */
    if (cfg != NULL && (nonempty(cfg->access_key_id) || nonempty(cfg->secret_access_key))) {
        if (!nonempty(cfg->access_key_id) || !nonempty(cfg->secret_access_key)) {
            /* Silently falling back to other keys would sign as someone
             * else than the caller asked for. */
            ddbk_error_set(err, "InvalidArgument", 0, "config sets %s without %s",
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
        s = add_step(&ch, DDBK__STEP_STATIC, "");
        if (s == NULL || keys_copy(&s->keys, cfg->access_key_id, cfg->secret_access_key,
                      cfg->session_token) != 0)
            goto oom_fail;
        return finish(&ch, DDBK__PROV_CONFIG);
    }
    if (cfg != NULL && cfg->credentials_from_host) {
        if (add_step(&ch, DDBK__STEP_HOST, "") == NULL)
            goto fail;
        return finish(&ch, DDBK__PROV_HOST);
    }

    profile = profile_name(cfg, &explicit_profile);
    if (strlen(profile) > 255) {
        ddbk_error_set(err, "InvalidArgument", 0, "profile name longer than 255 bytes");
        return -1;
    }
    if (has_control(profile)) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "profile name from %s contains a control character",
                       explicit_profile ? "the config" : "AWS_PROFILE");
        return -1;
    }

    /* 2 the environment's keys. */
    if (explicit_profile) {
        skip(&ch, DDBK__PROV_ENV ": skipped, the config names a profile");
    } else {
        rc = env_static_step(&ch, "");
        if (rc < 0)
            goto fail;
        if (rc > 0)
            return finish(&ch, DDBK__PROV_ENV);
        if ((env("AWS_ACCESS_KEY_ID") != NULL) != (env("AWS_SECRET_ACCESS_KEY") != NULL))
            skip(&ch, DDBK__PROV_ENV ": AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must "
                                     "both be set");
        else
            skip(&ch, DDBK__PROV_ENV ": AWS_ACCESS_KEY_ID not set");
    }

    if (sts_where(&ch) != 0)
        goto fail;

    /* 3 web identity from the environment (IRSA). */
    wit = env("AWS_WEB_IDENTITY_TOKEN_FILE");
    arn = env("AWS_ROLE_ARN");
    if (wit != NULL && arn != NULL) {
        const char *session = env("AWS_ROLE_SESSION_NAME");
        if (has_control(wit) || has_control(arn) || has_control(session)) {
            ddbk_error_set(err, "InvalidArgument", 0,
                           "AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN or "
                           "AWS_ROLE_SESSION_NAME contains a control character");
            goto fail;
        }
        s = add_step(&ch, DDBK__STEP_WEB_IDENTITY, "");
        if (s == NULL)
            goto fail;
        expand_path(s->token_file, sizeof s->token_file, wit);
        if (s->token_file[0] == '\0') {
            ddbk_error_set(err, "InvalidArgument", 0, "AWS_WEB_IDENTITY_TOKEN_FILE is too long");
            goto fail;
        }
        if (fill_role(&ch, s, arn, session ? session : "", "", NULL) != 0)
            goto fail;
        return finish(&ch, DDBK__PROV_WEB_IDENTITY);
    }
    skip(&ch, DDBK__PROV_WEB_IDENTITY ": %s not set",
         wit == NULL ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN");

    /* 4 the profile. */
    file_load(&ch.cred, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    file_load(&ch.conf, "AWS_CONFIG_FILE", "config");
    rc = resolve_profile(&ch, profile, NULL);
    if (rc < 0)
        goto fail;
    if (rc > 0) {
        file_wipe(&ch.cred);
        file_wipe(&ch.conf);
        return finish(&ch, DDBK__PROV_PROFILE);
    }
    if (ch.cred.too_big || ch.conf.too_big) {
        skip(&ch, DDBK__PROV_PROFILE ": %s is larger than 1 MiB; not read",
             ch.cred.too_big ? ch.cred.path : ch.conf.path);
    } else if (!profile_exists(&ch, profile)) {
        if (explicit_profile || strcmp(profile, "default") != 0) {
            /* A profile asked for by name and absent is a mistake to
             * report, not a reason to sign as the instance's role. */
            ddbk_error_set(err, "MissingCredentials", 0, "profile \"%s\" not found in %s or %s",
                           profile, shown(&ch.cred), shown(&ch.conf));
            goto fail;
        }
        skip(&ch, DDBK__PROV_PROFILE ": no profile \"%s\" in %s or %s", profile,
             shown(&ch.cred), shown(&ch.conf));
    } else {
        skip(&ch, DDBK__PROV_PROFILE ": profile \"%s\" has no credentials in %s or %s", profile,
             shown(&ch.cred), shown(&ch.conf));
    }
    file_wipe(&ch.cred);
    file_wipe(&ch.conf);

    /* 5 the container endpoint. */
    rc = container_step(&ch, "");
    if (rc < 0)
        goto fail;
    if (rc > 0)
        return finish(&ch, DDBK__PROV_CONTAINER);
    skip(&ch, DDBK__PROV_CONTAINER ": AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and "
                                   "_FULL_URI not set");

    /* 6 instance metadata. */
    if (!imds_disabled()) {
        if (imds_step(&ch, "") != 0)
            goto fail;
        return finish(&ch, DDBK__PROV_IMDS);
    }
    skip(&ch, DDBK__PROV_IMDS ": disabled by AWS_EC2_METADATA_DISABLED");
    ddbk_error_set(err, "MissingCredentials", 0, "no credentials: %s", plan->skipped);
    goto fail;

oom_fail:
    oom(&ch);
fail:
    file_wipe(&ch.cred);
    file_wipe(&ch.conf);
    ddbk__plan_wipe(plan);
    return -1;
}

/* ------------------------------------------------------------ static keys */

DDBK_HIDDEN void ddbk__credentials_wipe(ddbk_credentials *c)
{
    if (c == NULL)
        return;
    wipe_str(&c->access_key_id);
    wipe_str(&c->secret_access_key);
    wipe_str(&c->session_token);
    memset(c->source, 0, sizeof c->source);
}

DDBK_HIDDEN int ddbk__credentials_copy(const ddbk_credentials *src, ddbk_credentials *out)
{
    ddbk__fetched f;

    memset(out, 0, sizeof *out);
    if (src->access_key_id == NULL || src->secret_access_key == NULL)
        return -1;
    if (keys_copy(&f, src->access_key_id, src->secret_access_key, src->session_token) != 0)
        return -1;
    out->access_key_id = f.access_key_id;
    out->secret_access_key = f.secret_access_key;
    out->session_token = f.session_token;
    memcpy(out->source, src->source, sizeof out->source);
    return 0;
}

/* The clients that sign with keys known now: the plan, when it is one
 * STATIC step. Kept for the callers that do not fetch (yet). */
DDBK_HIDDEN int ddbk__credentials_resolve(const ddbk_config *cfg, ddbk_credentials *out,
                                          ddbk_error *err)
{
    ddbk__plan *plan = malloc(sizeof *plan);
    ddbk__step *s;

    memset(out, 0, sizeof *out);
    if (plan == NULL) {
        ddbk_error_set(err, "OutOfMemory", 0, "out of memory reading credentials");
        return -1;
    }
    if (ddbk__plan_resolve(cfg, plan, err) != 0) {
        free(plan);
        return -1;
    }
    s = &plan->steps[0];
    if (plan->nsteps != 1 || s->kind != DDBK__STEP_STATIC) {
        ddbk_error_set(err, "MissingCredentials", 0,
                       "credentials from %s%s%s%s need a fetch, which this client does not "
                       "do; %s",
                       plan->provider, s->profile[0] ? " (profile \"" : "",
                       plan->steps[plan->nsteps - 1].profile,
                       s->profile[0] ? "\")" : "", plan->skipped);
        ddbk__plan_wipe(plan);
        free(plan);
        return -1;
    }
    out->access_key_id = s->keys.access_key_id;
    out->secret_access_key = s->keys.secret_access_key;
    out->session_token = s->keys.session_token;
    memset(&s->keys, 0, sizeof s->keys);
    if (strcmp(plan->provider, DDBK__PROV_PROFILE) == 0)
        snprintf(out->source, sizeof out->source, "profile:%.20s", s->profile);
    else
        snprintf(out->source, sizeof out->source, "%s", plan->provider);
    ddbk__plan_wipe(plan);
    free(plan);
    return 0;
}

/* ------------------------------------------------------------ the region */

DDBK_HIDDEN int ddbk__region_resolve(const ddbk_config *cfg, char *out, size_t outlen)
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
