/*
 * engine/ini.c and engine/credentials.c: the shared-file parser on its own,
 * then the credential and region chains against files in a temporary HOME
 * with a clean AWS_* environment for every test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "creds.h"
#include "internal.h"

/* ------------------------------------------------------------ ini */

static int lookup(const char *text, const char *section, const char *key,
                  char *out, size_t outlen)
{
    return ddbk__ini_lookup(text, strlen(text), section, key, out, outlen);
}

static void assert_value(const char *text, const char *section,
                         const char *key, const char *want)
{
    char out[256];

    if (want == NULL) {
        assert_int_equal(lookup(text, section, key, out, sizeof out), 0);
        assert_string_equal(out, "");
        return;
    }
    assert_int_equal(lookup(text, section, key, out, sizeof out), 1);
    assert_string_equal(out, want);
}

static void test_ini_basics(void **state)
{
    const char *text =
        "[default]\n"
        "aws_access_key_id = AKID\n"
        "aws_secret_access_key=SECRET\n"
        "region : eu-west-1\n"
        "output\t=\tjson  \n"
        "empty =\n"
        "\n"
        "[profile dev]\n"
        "region = us-east-2\n"
        "[ spaced ]\n"
        "k = v\n";

    (void)state;
    assert_value(text, "default", "aws_access_key_id", "AKID");
    assert_value(text, "default", "aws_secret_access_key", "SECRET");
    assert_value(text, "default", "region", "eu-west-1");
    assert_value(text, "default", "output", "json");
    assert_value(text, "default", "empty", "");
    assert_value(text, "profile dev", "region", "us-east-2");
    assert_value(text, "spaced", "k", "v");
    /* Keys are case-insensitive, sections are not. */
    assert_value(text, "default", "AWS_ACCESS_KEY_ID", "AKID");
    assert_value(text, "Default", "region", NULL);
    /* Absent keys and sections, and sections matched whole. */
    assert_value(text, "default", "aws_session_token", NULL);
    assert_value(text, "dev", "region", NULL);
    assert_value(text, "profile", "region", NULL);
    assert_value(text, "nope", "region", NULL);
    /* A key is matched whole, not as a prefix. */
    assert_value(text, "default", "aws_access_key", NULL);
    assert_value(text, "default", "regionx", NULL);
}

static void test_ini_comments(void **state)
{
    const char *text =
        "# a comment\n"
        "; another\n"
        "[default]\n"
        "# region = commented-out\n"
        "   ; region = indented-comment\n"
        "region = us-west-1 # not a comment: no inline comments\n"
        "[other] ; after a header is fine\n"
        "k = v\n";

    (void)state;
    assert_value(text, "default", "region",
                 "us-west-1 # not a comment: no inline comments");
    assert_value(text, "other", "k", "v");
    assert_value(text, "default", "# region", NULL);
}

static void test_ini_line_endings(void **state)
{
    (void)state;
    assert_value("[default]\r\nregion = r1\r\nk = v\r\n", "default", "region", "r1");
    assert_value("[default]\r\nregion = r1\r\nk = v\r\n", "default", "k", "v");
    /* Missing trailing newline, with and without CR. */
    assert_value("[default]\nregion = r2", "default", "region", "r2");
    assert_value("[default]\r\nregion = r3\r", "default", "region", "r3");
    /* Old Mac line ends are not line ends: one long line. */
    assert_value("[default]\rregion = r4\r", "default", "region", NULL);
    /* A byte order mark before the first section. */
    assert_value("\xEF\xBB\xBF[default]\nregion = r5\n", "default", "region", "r5");
    assert_value("", "default", "region", NULL);
    assert_value("\n\n\n", "default", "region", NULL);
}

static void test_ini_nested(void **state)
{
    const char *text =
        "[profile dev]\n"
        "s3 =\n"
        "  region = not-this-one\n"
        "  max_concurrent_requests = 20\n"
        "region = us-east-1\n"
        "[profile x]\n"
        "  indented_key = ok\n"
        "  next = also-ok\n"
        "    deeper = continuation\n"
        "a = 1\n"
        "  [profile y]\n"
        "b = 2\n";

    (void)state;
    assert_value(text, "profile dev", "region", "us-east-1");
    assert_value(text, "profile dev", "max_concurrent_requests", NULL);
    assert_value(text, "profile dev", "s3", "");
    /* The first key of a section may be indented; deeper lines continue it. */
    assert_value(text, "profile x", "indented_key", "ok");
    assert_value(text, "profile x", "next", "also-ok");
    assert_value(text, "profile x", "deeper", NULL);
    /* An indented header under a key continues the key: no section y. */
    assert_value(text, "profile x", "b", "2");
    assert_value(text, "profile y", "b", NULL);
}

static void test_ini_odd_lines(void **state)
{
    const char *text =
        "orphan = before-any-section\n"
        "[default]\n"
        "not a key line\n"
        "= no-key\n"
        "k = first\n"
        "k = second\n"
        "[broken\n"
        "after = broken\n"
        "[default]\n"
        "again = yes\n";

    (void)state;
    assert_value(text, "default", "orphan", NULL);
    assert_value(text, "default", "k", "second"); /* last one wins */
    assert_value(text, "default", "after", NULL); /* "[broken" left default */
    assert_value(text, "default", "again", "yes"); /* sections may repeat */
    assert_value(text, "broken", "after", NULL);
}

static void test_ini_truncation(void **state)
{
    char out[8];
    const char *text = "[default]\nk = 0123456789\n";

    (void)state;
    assert_int_equal(lookup(text, "default", "k", out, 4), 1);
    assert_string_equal(out, "012");
    assert_int_equal(lookup(text, "default", "k", out, 1), 1);
    assert_string_equal(out, "");
    assert_int_equal(lookup(text, "default", "k", out, 0), 1); /* nothing written */
    assert_int_equal(lookup(text, "default", "k", NULL, 0), 1);
    memset(out, 'x', sizeof out);
    assert_int_equal(lookup(text, "default", "k", out, sizeof out), 1);
    assert_string_equal(out, "0123456");
}

/* len is the limit, not the NUL: a buffer with no terminator, sized exactly
 * (AddressSanitizer catches any read past it), cut inside a value. */
static void test_ini_never_reads_past_len(void **state)
{
    const char *text = "[default]\nk = value-and-more";
    size_t cut = strlen("[default]\nk = val");
    char *exact = malloc(cut), out[64];

    (void)state;
    assert_non_null(exact);
    memcpy(exact, text, cut);
    assert_int_equal(ddbk__ini_lookup(exact, cut, "default", "k", out, sizeof out), 1);
    assert_string_equal(out, "val");
    /* Cut inside the section header: no section at all. */
    assert_int_equal(ddbk__ini_lookup(exact, 5, "default", "k", out, sizeof out), 0);
    assert_int_equal(ddbk__ini_lookup(exact, 0, "default", "k", out, sizeof out), 0);
    assert_int_equal(ddbk__ini_lookup(NULL, 10, "default", "k", out, sizeof out), 0);
    free(exact);
}

static void test_ini_section_exists(void **state)
{
    const char *text = "[empty]\n[default]\nk = v\n";

    (void)state;
    assert_int_equal(lookup(text, "empty", NULL, NULL, 0), 1);
    assert_int_equal(lookup(text, "default", NULL, NULL, 0), 1);
    assert_int_equal(lookup(text, "missing", NULL, NULL, 0), 0);
}

/* --------------------------------------------------- credentials */

static char tmpdir[256];
static char cred_path[300], conf_path[300];

static const char *const aws_vars[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SSO", NULL,
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* A fresh temporary HOME, no AWS_* variables, and the two files pointed at
 * (but not created) inside it. */
static int env_setup(void **state)
{
    int i;

    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ddbk_cred_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    for (i = 0; aws_vars[i] != NULL; i++)
        unsetenv(aws_vars[i]);
    setenv("HOME", tmpdir, 1);
    snprintf(cred_path, sizeof cred_path, "%s/credentials", tmpdir);
    snprintf(conf_path, sizeof conf_path, "%s/config", tmpdir);
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
    setenv("AWS_CONFIG_FILE", conf_path, 1);
    return 0;
}

static int env_teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void resolve_ok(const ddbk_config *cfg, const char *id,
                       const char *secret, const char *token,
                       const char *source)
{
    ddbk_credentials c;
    ddbk_error err;

    ddbk_error_clear(&err);
    if (ddbk__credentials_resolve(cfg, &c, &err) != 0)
        fail_msg("resolve failed: %s: %s", err.code, err.message);
    assert_string_equal(c.access_key_id, id);
    assert_string_equal(c.secret_access_key, secret);
    if (token == NULL)
        assert_null(c.session_token);
    else
        assert_string_equal(c.session_token, token);
    assert_string_equal(c.source, source);
    ddbk__credentials_wipe(&c);
    assert_null(c.access_key_id);
    assert_null(c.secret_access_key);
    assert_null(c.session_token);
}

/* Fails with `code`; the message must contain `want` and no secret. */
static void resolve_fails(const ddbk_config *cfg, const char *code,
                          const char *want)
{
    static const char *const secrets[] = {"FILESECRET", "ENVSECRET",
                                          "CONFSECRET", "TOKENVALUE", NULL};
    ddbk_credentials c;
    ddbk_error err;
    int i;

    assert_int_equal(ddbk__credentials_resolve(cfg, &c, &err), -1);
    assert_string_equal(err.code, code);
    if (want != NULL && strstr(err.message, want) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.message, want);
    for (i = 0; secrets[i] != NULL; i++)
        if (strstr(err.message, secrets[i]) != NULL)
            fail_msg("message \"%s\" leaks a secret", err.message);
    assert_null(c.access_key_id);
    assert_null(c.secret_access_key);
    assert_null(c.session_token);
}

static const char *CRED_FILE =
    "[default]\n"
    "aws_access_key_id = FILEDEFAULT\n"
    "aws_secret_access_key = FILESECRET\n"
    "\n"
    "[dev]\n"
    "aws_access_key_id = FILEDEV\n"
    "aws_secret_access_key = FILESECRET\n"
    "aws_session_token = TOKENVALUE\n"
    "\n"
    "[half]\n"
    "aws_access_key_id = HALFID\n";

static const char *CONF_FILE =
    "[default]\n"
    "region = eu-central-1\n"
    "\n"
    "[profile conf]\n"
    "aws_access_key_id = CONFID\n"
    "aws_secret_access_key = CONFSECRET\n"
    "region = ap-south-1\n"
    "\n"
    "[profile half]\n"
    "aws_access_key_id = HALFCONFID\n"
    "aws_secret_access_key = CONFSECRET\n"
    "\n"
    "[profile role]\n"
    "role_arn = arn:aws:iam::123456789012:role/x\n"
    "source_profile = default\n";

static void test_explicit_wins(void **state)
{
    ddbk_config cfg;

    (void)state;
    write_file(cred_path, CRED_FILE);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.access_key_id = "CFGID";
    cfg.secret_access_key = "CFGSECRET";
    resolve_ok(&cfg, "CFGID", "CFGSECRET", NULL, "config");
    cfg.session_token = "CFGTOKEN";
    resolve_ok(&cfg, "CFGID", "CFGSECRET", "CFGTOKEN", "config");
    cfg.session_token = "";
    resolve_ok(&cfg, "CFGID", "CFGSECRET", NULL, "config");
    /* Even a named profile does not beat explicit keys. */
    cfg.profile = "dev";
    resolve_ok(&cfg, "CFGID", "CFGSECRET", NULL, "config");
}

static void test_explicit_half_is_an_error(void **state)
{
    ddbk_config cfg;

    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.access_key_id = "CFGID";
    resolve_fails(&cfg, "InvalidArgument", "secret_access_key");
    cfg.access_key_id = NULL;
    cfg.secret_access_key = "CFGSECRET";
    resolve_fails(&cfg, "InvalidArgument", "access_key_id");
}

static void test_env_beats_files(void **state)
{
    (void)state;
    write_file(cred_path, CRED_FILE);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
    resolve_ok(NULL, "ENVID", "ENVSECRET", NULL, "environment");
    setenv("AWS_SESSION_TOKEN", "ENVTOKEN", 1);
    resolve_ok(NULL, "ENVID", "ENVSECRET", "ENVTOKEN", "environment");
    /* AWS_PROFILE picks a profile, but environment keys still come first. */
    setenv("AWS_PROFILE", "dev", 1);
    resolve_ok(NULL, "ENVID", "ENVSECRET", "ENVTOKEN", "environment");
}

static void test_env_half_falls_through(void **state)
{
    (void)state;
    write_file(cred_path, CRED_FILE);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    resolve_ok(NULL, "FILEDEFAULT", "FILESECRET", NULL, "profile:default");
    setenv("AWS_SECRET_ACCESS_KEY", "", 1);
    resolve_ok(NULL, "FILEDEFAULT", "FILESECRET", NULL, "profile:default");
}

static void test_explicit_profile_beats_env(void **state)
{
    ddbk_config cfg;

    (void)state;
    write_file(cred_path, CRED_FILE);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
    setenv("AWS_PROFILE", "default", 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.profile = "dev";
    resolve_ok(&cfg, "FILEDEV", "FILESECRET", "TOKENVALUE", "profile:dev");
}

static void test_aws_profile(void **state)
{
    (void)state;
    write_file(cred_path, CRED_FILE);
    resolve_ok(NULL, "FILEDEFAULT", "FILESECRET", NULL, "profile:default");
    setenv("AWS_PROFILE", "dev", 1);
    resolve_ok(NULL, "FILEDEV", "FILESECRET", "TOKENVALUE", "profile:dev");
    setenv("AWS_PROFILE", "", 1); /* empty is unset */
    resolve_ok(NULL, "FILEDEFAULT", "FILESECRET", NULL, "profile:default");
}

static void test_config_file(void **state)
{
    ddbk_config cfg;

    (void)state;
    write_file(cred_path, CRED_FILE);
    write_file(conf_path, CONF_FILE);
    memset(&cfg, 0, sizeof cfg);
    cfg.profile = "conf";
    resolve_ok(&cfg, "CONFID", "CONFSECRET", NULL, "profile:conf");
    /* Half a pair in the credentials file: the config file's pair wins. */
    cfg.profile = "half";
    resolve_ok(&cfg, "HALFCONFID", "CONFSECRET", NULL, "profile:half");
    /* The default profile is [default] in the config file too... */
    write_file(cred_path, "");
    write_file(conf_path, "[default]\naws_access_key_id = A\naws_secret_access_key = B\n");
    resolve_ok(NULL, "A", "B", NULL, "profile:default");
    /* ...or [profile default]. */
    write_file(conf_path, "[profile default]\naws_access_key_id = C\n"
                          "aws_secret_access_key = D\naws_session_token = E\n");
    resolve_ok(NULL, "C", "D", "E", "profile:default");
    /* A non-default profile needs the "profile " prefix in the config file. */
    write_file(conf_path, "[conf]\naws_access_key_id = C\naws_secret_access_key = D\n");
    cfg.profile = "conf";
    resolve_fails(&cfg, "MissingCredentials", "profile \"conf\" not found");
}

static void test_home_default_paths(void **state)
{
    char dir[300], path[320];

    (void)state;
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unsetenv("AWS_CONFIG_FILE");
    snprintf(dir, sizeof dir, "%s/.aws", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/credentials", dir);
    write_file(path, "[default]\r\naws_access_key_id=HOMEID\r\naws_secret_access_key=HOMESECRET");
    resolve_ok(NULL, "HOMEID", "HOMESECRET", NULL, "profile:default");
    /* "~/" in the variable means $HOME, as in the CLI. */
    setenv("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", 1);
    resolve_ok(NULL, "HOMEID", "HOMESECRET", NULL, "profile:default");
}

static void test_missing(void **state)
{
    ddbk_config cfg;

    (void)state;
    /* No files at all. */
    resolve_fails(NULL, "MissingCredentials", cred_path);
    resolve_fails(NULL, "MissingCredentials", conf_path);
    resolve_fails(NULL, "MissingCredentials", "profile \"default\"");

    /* Half the environment pair is named, its value is not. */
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    resolve_fails(NULL, "MissingCredentials", "AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
    resolve_fails(NULL, "MissingCredentials", "must both be set");

    /* Files with secrets, but not for the profile asked for. */
    write_file(cred_path, CRED_FILE);
    write_file(conf_path, CONF_FILE);
    memset(&cfg, 0, sizeof cfg);
    cfg.profile = "nope";
    resolve_fails(&cfg, "MissingCredentials", "profile \"nope\" not found");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_PROFILE", "alsonope", 1);
    resolve_fails(NULL, "MissingCredentials", "profile \"alsonope\" not found");

    /* A profile that gets its keys by a fetch, which the static-keys
     * wrapper does not do. */
    cfg.profile = "role";
    resolve_fails(&cfg, "MissingCredentials", "assume-role (profile \"role\")");
    /* A profile that exists with only half a pair anywhere. */
    write_file(conf_path, "");
    cfg.profile = "half";
    resolve_fails(&cfg, "MissingCredentials", "profile \"half\" has no");
}

static void test_file_too_big(void **state)
{
    FILE *f;
    int i;

    (void)state;
    f = fopen(cred_path, "wb");
    assert_non_null(f);
    fputs("[default]\naws_access_key_id = BIGID\naws_secret_access_key = FILESECRET\n", f);
    for (i = 0; i < (1 << 20) / 16 + 1; i++)
        fputs("# padding......\n", f);
    fclose(f);
    resolve_fails(NULL, "MissingCredentials", "larger than 1 MiB");
}

static void test_not_a_regular_file(void **state)
{
    (void)state;
    /* A directory where the file should be: skipped, not an error. */
    assert_int_equal(mkdir(cred_path, 0700), 0);
    write_file(conf_path, "[default]\naws_access_key_id = A\naws_secret_access_key = B\n");
    resolve_ok(NULL, "A", "B", NULL, "profile:default");
}

static void test_long_values(void **state)
{
    char *text, token[3000];
    size_t n;

    (void)state;
    memset(token, 'T', sizeof token - 1);
    token[sizeof token - 1] = '\0';
    n = strlen(token) + 200;
    text = malloc(n);
    assert_non_null(text);
    snprintf(text, n, "[default]\naws_access_key_id=I\naws_secret_access_key=S\n"
                      "aws_session_token=%s\n", token);
    write_file(cred_path, text);
    resolve_ok(NULL, "I", "S", token, "profile:default");
    free(text);
}

/* -------------------------------------------------------- region */

static void region_is(const ddbk_config *cfg, const char *want)
{
    char out[64];

    if (want == NULL) {
        assert_int_equal(ddbk__region_resolve(cfg, out, sizeof out), -1);
        assert_string_equal(out, "");
    } else {
        assert_int_equal(ddbk__region_resolve(cfg, out, sizeof out), 0);
        assert_string_equal(out, want);
    }
}

static void test_region_order(void **state)
{
    ddbk_config cfg;
    char small[4];

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    region_is(&cfg, NULL);
    region_is(NULL, NULL);

    write_file(conf_path, CONF_FILE);
    region_is(&cfg, "eu-central-1");
    setenv("AWS_PROFILE", "conf", 1);
    region_is(&cfg, "ap-south-1");
    cfg.profile = "default";
    region_is(&cfg, "eu-central-1");
    cfg.profile = "role"; /* exists, no region */
    region_is(&cfg, NULL);
    cfg.profile = NULL;

    setenv("AWS_DEFAULT_REGION", "us-west-1", 1);
    region_is(&cfg, "us-west-1");
    setenv("AWS_REGION", "us-west-2", 1);
    region_is(&cfg, "us-west-2");
    cfg.region = "sa-east-1";
    region_is(&cfg, "sa-east-1");
    cfg.region = "";
    region_is(&cfg, "us-west-2");

    /* Too long to fit: refused (-2), not cut. */
    assert_int_equal(ddbk__region_resolve(&cfg, small, sizeof small), -2);
    assert_string_equal(small, "");
    assert_int_equal(ddbk__region_resolve(&cfg, small, 0), -1);
}

/* A credential goes into the Authorization or X-Amz-Security-Token header
 * as is: a CR/LF (or any control character) in one would end the header
 * and start another. Each source is refused by name, the value never
 * shown. */
static void fails_clean(const ddbk_config *cfg, const char *want)
{
    ddbk_credentials c;
    ddbk_error err;

    assert_int_equal(ddbk__credentials_resolve(cfg, &c, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    if (strstr(err.message, want) == NULL || strstr(err.message, "control character") == NULL)
        fail_msg("message \"%s\" lacks \"%s\" or \"control character\"", err.message, want);
    for (const char *p = err.message; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            fail_msg("message \"%s\" holds a control character", err.message);
    assert_null(strstr(err.message, "Evil"));
    static const char *const values[] = {"CFGSECRET", "ENVSECRET", "FILESECRET", "ENVTOKEN",
                                         "CFGID", "ENVID", "FILEDEV", NULL};
    for (int i = 0; values[i] != NULL; i++)
        if (strstr(err.message, values[i]) != NULL)
            fail_msg("message \"%s\" shows a value", err.message);
    assert_null(c.access_key_id);
    assert_null(c.secret_access_key);
    assert_null(c.session_token);
}

static void test_control_characters_in_config(void **state)
{
    ddbk_config cfg;

    (void)state;
    write_file(cred_path, CRED_FILE); /* not fallen back to */
    memset(&cfg, 0, sizeof cfg);
    cfg.access_key_id = "CFGID";
    cfg.secret_access_key = "CFGSECRET";
    cfg.session_token = "TOKEN\r\nX-Evil: 1";
    fails_clean(&cfg, "session_token from the config");
    cfg.session_token = NULL;
    cfg.access_key_id = "CFG\nEvil";
    fails_clean(&cfg, "access_key_id from the config");
    cfg.access_key_id = "CFGID";
    cfg.secret_access_key = "CFGSECRET\x01Evil";
    fails_clean(&cfg, "secret_access_key from the config");
    cfg.secret_access_key = "CFGSECRET\x7f";
    fails_clean(&cfg, "secret_access_key from the config");
}

static void test_control_characters_in_env(void **state)
{
    (void)state;
    write_file(cred_path, CRED_FILE);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
    setenv("AWS_SESSION_TOKEN", "ENVTOKEN\r\nX-Evil: 1", 1);
    fails_clean(NULL, "AWS_SESSION_TOKEN from the environment");
    setenv("AWS_SESSION_TOKEN", "ENVTOKEN", 1);
    setenv("AWS_ACCESS_KEY_ID", "ENV\tEvil", 1);
    fails_clean(NULL, "AWS_ACCESS_KEY_ID from the environment");
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET\nEvil", 1);
    fails_clean(NULL, "AWS_SECRET_ACCESS_KEY from the environment");
    /* A profile name ends up in messages: no escape sequences there. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_PROFILE", "dev\x1b]0;Evil\x07", 1);
    fails_clean(NULL, "profile name from AWS_PROFILE");
}

static void test_control_characters_in_files(void **state)
{
    ddbk_config cfg;

    (void)state;
    write_file(cred_path, "[dev]\n"
                          "aws_access_key_id = FILEDEV\n"
                          "aws_secret_access_key = FILESECRET\n"
                          "aws_session_token = TOKEN\rX-Evil: 1\n");
    memset(&cfg, 0, sizeof cfg);
    cfg.profile = "dev";
    fails_clean(&cfg, "aws_session_token of profile \"dev\" in ");
    write_file(cred_path, "[dev]\n"
                          "aws_access_key_id = FILE\x1b[2JEvil\n"
                          "aws_secret_access_key = FILESECRET\n");
    fails_clean(&cfg, "aws_access_key_id of profile \"dev\"");
    write_file(cred_path, "");
    write_file(conf_path, "[profile dev]\n"
                          "aws_access_key_id = CONFID\n"
                          "aws_secret_access_key = CONF\x08SECRET\n");
    fails_clean(&cfg, "aws_secret_access_key of profile \"dev\"");
    cfg.profile = "de\rv";
    fails_clean(&cfg, "profile name from the config");
}


/* ------------------------------------------------------------ plans */

static void plan_ok(const ddbk_config *cfg, ddbk__plan *plan, const char *provider,
                    int nsteps)
{
    ddbk_error err;

    if (ddbk__plan_resolve(cfg, plan, &err) != 0)
        fail_msg("plan failed: %s: %s", err.code, err.message);
    assert_string_equal(plan->provider, provider);
    assert_int_equal(plan->nsteps, nsteps);
    for (const char *p = plan->id; *p; p++)
        assert_true((unsigned char)*p >= 0x20);
    assert_null(strstr(plan->id, "SECRET"));
    assert_null(strstr(plan->skipped, "SECRET"));
}

static void plan_fails(const ddbk_config *cfg, const char *code, const char *want)
{
    ddbk__plan plan;
    ddbk_error err;

    assert_int_equal(ddbk__plan_resolve(cfg, &plan, &err), -1);
    assert_string_equal(err.code, code);
    if (want != NULL && strstr(err.message, want) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.message, want);
    assert_null(strstr(err.message, "SECRET"));
    assert_null(strstr(err.message, "TOKENVALUE"));
    assert_int_equal(plan.nsteps, 0);
}

static void test_plan_precedence(void **state)
{
    ddbk__plan plan;
    ddbk_config cfg;
    char tf[300];

    (void)state;
    write_file(cred_path, CRED_FILE);
    write_file(conf_path, CONF_FILE);
    snprintf(tf, sizeof tf, "%s/token", tmpdir);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/c", 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tf, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/w", 1);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);

    /* Environment keys beat web identity, the profile, container, IMDS. */
    plan_ok(NULL, &plan, "environment", 1);
    assert_string_equal(plan.steps[0].keys.access_key_id, "ENVID");
    ddbk__plan_wipe(&plan);

    /* A profile named in the config skips the environment's keys, but
     * web identity from the environment still comes before it. */
    memset(&cfg, 0, sizeof cfg);
    cfg.profile = "dev";
    plan_ok(&cfg, &plan, "web-identity", 1);
    assert_non_null(strstr(plan.skipped, "environment: skipped, the config names a profile"));
    ddbk__plan_wipe(&plan);

    /* Web identity beats the profile. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    plan_ok(NULL, &plan, "web-identity", 1);
    assert_string_equal(plan.steps[0].token_file, tf);
    assert_string_equal(plan.steps[0].role_arn, "arn:aws:iam::1:role/w");
    ddbk__plan_wipe(&plan);

    /* The profile beats the container endpoint. */
    unsetenv("AWS_ROLE_ARN");
    plan_ok(NULL, &plan, "profile", 1);
    assert_string_equal(plan.steps[0].keys.access_key_id, "FILEDEFAULT");
    assert_non_null(strstr(plan.skipped, "web-identity: AWS_ROLE_ARN not set"));
    ddbk__plan_wipe(&plan);

    /* The container endpoint beats IMDS. */
    unlink(cred_path);
    unlink(conf_path);
    plan_ok(NULL, &plan, "container", 1);
    assert_string_equal(plan.steps[0].url, "http://127.0.0.1:1/c");
    assert_null(plan.steps[0].auth_token);
    ddbk__plan_wipe(&plan);

    /* IMDS last, at its default address unless told otherwise. */
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    plan_ok(NULL, &plan, "imds", 1);
    assert_string_equal(plan.steps[0].imds_endpoint, "http://169.254.169.254");
    assert_string_equal(plan.id, "imds||http://169.254.169.254");
    assert_non_null(strstr(plan.skipped, "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
    ddbk__plan_wipe(&plan);
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]/", 1);
    plan_ok(NULL, &plan, "imds", 1);
    assert_string_equal(plan.steps[0].imds_endpoint, "http://[fd00:ec2::254]");
    ddbk__plan_wipe(&plan);
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "file:///etc/passwd", 1);
    plan_fails(NULL, "InvalidArgument", "AWS_EC2_METADATA_SERVICE_ENDPOINT");

    /* Disabled: nothing applies, and the message says why for each. */
    setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
    plan_fails(NULL, "MissingCredentials", "environment: AWS_ACCESS_KEY_ID not set; "
                                           "web-identity: AWS_ROLE_ARN not set; profile: no "
                                           "profile \"default\" in");
    plan_fails(NULL, "MissingCredentials", "imds: disabled by AWS_EC2_METADATA_DISABLED");

    /* The host's own source. */
    memset(&cfg, 0, sizeof cfg);
    cfg.credentials_from_host = 1;
    plan_ok(&cfg, &plan, "host", 1);
    ddbk__plan_wipe(&plan);
}

static void test_plan_container_hosts(void **state)
{
    static const char *const allowed[] = {
        "http://127.0.0.1/c", "http://127.1.2.3:8080/c", "http://localhost:9/c",
        "http://[::1]:9/c", "http://169.254.170.2/v2/credentials", "http://169.254.170.23/v1",
        "http://[fd00:ec2::23]/v1", "https://creds.example.com/x", NULL};
    static const char *const refused[] = {
        "http://example.com/c", "http://127.0.0.1.evil.com/c", "http://169.254.170.3/c",
        "http://10.0.0.1/c", "http://[::2]/c", "ftp://127.0.0.1/c",
        "http://user@127.0.0.1/c", "http://127.0.0.1/c\r\nX: y", NULL};
    ddbk__plan plan;

    (void)state;
    for (int i = 0; allowed[i] != NULL; i++) {
        setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", allowed[i], 1);
        plan_ok(NULL, &plan, "container", 1);
        assert_string_equal(plan.steps[0].url, allowed[i]);
        ddbk__plan_wipe(&plan);
    }
    for (int i = 0; refused[i] != NULL; i++) {
        setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", refused[i], 1);
        plan_fails(NULL, "InvalidArgument", "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    }
    /* RELATIVE_URI wins and names the ECS agent; the token is kept. */
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "TOKENVALUE", 1);
    plan_ok(NULL, &plan, "container", 1);
    assert_string_equal(plan.steps[0].url, "http://169.254.170.2/v2/credentials/x");
    assert_string_equal(plan.steps[0].auth_token, "TOKENVALUE");
    ddbk__plan_wipe(&plan);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "TOKENVALUE\r\nX: y", 1);
    plan_fails(NULL, "InvalidArgument", "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "@evil.com/x", 1);
    plan_fails(NULL, "InvalidArgument", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
}

static void test_plan_roles(void **state)
{
    ddbk__plan plan;
    ddbk_config cfg;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    write_file(cred_path, "[keys]\naws_access_key_id = KEYSID\naws_secret_access_key = SECRET\n"
                          "[self]\naws_access_key_id = SELFID\naws_secret_access_key = SECRET\n");
    write_file(conf_path,
               "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
               "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = c\n"
               "[profile c]\nrole_arn = arn:aws:iam::1:role/c\nsource_profile = a\n"
               "[profile self]\nrole_arn = arn:aws:iam::1:role/self\nsource_profile = self\n"
               "[profile viaself]\nrole_arn = arn:aws:iam::1:role/v\nsource_profile = self\n"
               "[profile direct]\nrole_arn = arn:aws:iam::1:role/d\nsource_profile = keys\n"
               "region = sa-east-1\nduration_seconds = 3600\n"
               "[profile lonely]\nrole_arn = arn:aws:iam::1:role/l\n"
               "[profile nosrc]\nrole_arn = arn:aws:iam::1:role/n\nsource_profile = ghost\n"
               "[profile empty]\nregion = us-west-2\n"
               "[profile emptysrc]\nrole_arn = arn:aws:iam::1:role/e\nsource_profile = empty\n"
               "[profile badsrc]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Moon\n"
               "[profile both]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = keys\n"
               "credential_source = Environment\n"
               "[profile baddur]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = keys\n"
               "duration_seconds = 60\n"
               "[profile wifsrc]\nrole_arn = arn:aws:iam::1:role/ws\nsource_profile = keys\n"
               "web_identity_token_file = /t\n"
               "[profile wif]\nrole_arn = arn:aws:iam::1:role/wif\n"
               "web_identity_token_file = ~/tok\nrole_session_name = s1\n"
               "[profile l1]\nrole_arn = arn:aws:iam::1:role/1\nsource_profile = l2\n"
               "[profile l2]\nrole_arn = arn:aws:iam::1:role/2\nsource_profile = l3\n"
               "[profile l3]\nrole_arn = arn:aws:iam::1:role/3\nsource_profile = l4\n"
               "[profile l4]\nrole_arn = arn:aws:iam::1:role/4\nsource_profile = l5\n"
               "[profile l5]\nrole_arn = arn:aws:iam::1:role/5\nsource_profile = l6\n"
               "[profile l6]\nrole_arn = arn:aws:iam::1:role/6\nsource_profile = keys\n");

    cfg.profile = "a";
    plan_fails(&cfg, "InvalidArgument", "source_profile loop: a -> b -> c -> a");

    /* A profile that is its own source uses its static keys. */
    cfg.profile = "self";
    plan_ok(&cfg, &plan, "assume-role", 2);
    assert_string_equal(plan.steps[0].keys.access_key_id, "SELFID");
    assert_string_equal(plan.steps[1].role_arn, "arn:aws:iam::1:role/self");
    ddbk__plan_wipe(&plan);
    /* And so does a profile with role_arn and keys when it is a source. */
    cfg.profile = "viaself";
    plan_ok(&cfg, &plan, "assume-role", 2);
    assert_string_equal(plan.steps[0].keys.access_key_id, "SELFID");
    ddbk__plan_wipe(&plan);

    cfg.profile = "direct";
    plan_ok(&cfg, &plan, "assume-role", 2);
    assert_int_equal(plan.steps[1].duration_s, 3600);
    /* The profile's region places STS. */
    assert_string_equal(plan.steps[1].sts_url, "https://sts.sa-east-1.amazonaws.com/");
    assert_string_equal(plan.steps[1].sts_region, "sa-east-1");
    ddbk__plan_wipe(&plan);
    setenv("AWS_ENDPOINT_URL_STS", "https://sts.internal:8443/x?y=1", 1);
    plan_fails(&cfg, "InvalidArgument", "AWS_ENDPOINT_URL_STS");
    /* A bad STS endpoint matters only to a plan that calls STS. */
    cfg.profile = "keys";
    plan_ok(&cfg, &plan, "profile", 1);
    ddbk__plan_wipe(&plan);
    unsetenv("AWS_ENDPOINT_URL_STS");

    /* A source wins over web_identity_token_file. */
    cfg.profile = "wifsrc";
    plan_ok(&cfg, &plan, "assume-role", 2);
    assert_string_equal(plan.steps[0].keys.access_key_id, "KEYSID");
    ddbk__plan_wipe(&plan);

    cfg.profile = "wif";
    plan_ok(&cfg, &plan, "web-identity", 1);
    assert_string_equal(plan.steps[0].session_name, "s1");
    assert_non_null(strstr(plan.steps[0].token_file, "/tok"));
    assert_int_equal(strncmp(plan.steps[0].token_file, tmpdir, strlen(tmpdir)), 0);
    ddbk__plan_wipe(&plan);

    cfg.profile = "l1";
    plan_fails(&cfg, "InvalidArgument", "longer than 6 steps");
    cfg.profile = "lonely";
    plan_fails(&cfg, "InvalidArgument", "profile \"lonely\" has role_arn but no source_profile");
    cfg.profile = "nosrc";
    plan_fails(&cfg, "InvalidArgument", "source_profile \"ghost\" of profile \"nosrc\" not found");
    cfg.profile = "emptysrc";
    plan_fails(&cfg, "InvalidArgument", "source_profile \"empty\" of profile \"emptysrc\" has no");
    cfg.profile = "badsrc";
    plan_fails(&cfg, "InvalidArgument", "credential_source of profile \"badsrc\"");
    cfg.profile = "both";
    plan_fails(&cfg, "InvalidArgument", "sets both source_profile and credential_source");
    cfg.profile = "baddur";
    plan_fails(&cfg, "InvalidArgument", "duration_seconds of profile \"baddur\"");
}

static void test_plan_process_and_sso(void **state)
{
    ddbk__plan plan;
    ddbk_config cfg;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    write_file(conf_path, "[profile p]\ncredential_process = helper --x\n"
                          "[profile s]\nsso_session = corp\nsso_account_id = 1\n"
                          "sso_role_name = R\n"
                          "[sso-session corp]\nsso_start_url = https://x/start\n"
                          "sso_region = ca-central-1\n"
                          "[profile nosess]\nsso_session = gone\nsso_account_id = 1\n"
                          "sso_role_name = R\n"
                          "[profile noacct]\nsso_start_url = https://x\nsso_region = us-east-1\n"
                          "[profile badregion]\nsso_start_url = https://x\n"
                          "sso_region = us/east\nsso_account_id = 1\nsso_role_name = R\n");
    cfg.profile = "p";
    plan_ok(&cfg, &plan, "process", 1);
    assert_string_equal(plan.steps[0].command, "helper --x");
    assert_string_equal(plan.id, "process|p|");
    ddbk__plan_wipe(&plan);

    cfg.profile = "s";
    plan_ok(&cfg, &plan, "sso", 1);
    assert_string_equal(plan.steps[0].sso_session, "corp");
    assert_string_equal(plan.steps[0].sso_start_url, "https://x/start");
    assert_string_equal(plan.steps[0].sso_url, "https://portal.sso.ca-central-1.amazonaws.com");
    assert_non_null(strstr(plan.steps[0].sso_cache_dir, "/.aws/sso/cache"));
    ddbk__plan_wipe(&plan);

    cfg.profile = "nosess";
    plan_fails(&cfg, "InvalidArgument", "[sso-session gone] of profile \"nosess\"");
    cfg.profile = "noacct";
    plan_fails(&cfg, "InvalidArgument", "profile \"noacct\" lacks sso_account_id");
    cfg.profile = "badregion";
    plan_fails(&cfg, "InvalidArgument", "sso_region of profile \"badregion\"");
}

int main(void)
{
    const struct CMUnitTest ini[] = {
        cmocka_unit_test(test_ini_basics),
        cmocka_unit_test(test_ini_comments),
        cmocka_unit_test(test_ini_line_endings),
        cmocka_unit_test(test_ini_nested),
        cmocka_unit_test(test_ini_odd_lines),
        cmocka_unit_test(test_ini_truncation),
        cmocka_unit_test(test_ini_never_reads_past_len),
        cmocka_unit_test(test_ini_section_exists),
    };
#define ENV_TEST(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)
    const struct CMUnitTest chain[] = {
        ENV_TEST(test_explicit_wins),
        ENV_TEST(test_explicit_half_is_an_error),
        ENV_TEST(test_env_beats_files),
        ENV_TEST(test_env_half_falls_through),
        ENV_TEST(test_explicit_profile_beats_env),
        ENV_TEST(test_aws_profile),
        ENV_TEST(test_config_file),
        ENV_TEST(test_home_default_paths),
        ENV_TEST(test_missing),
        ENV_TEST(test_file_too_big),
        ENV_TEST(test_not_a_regular_file),
        ENV_TEST(test_long_values),
        ENV_TEST(test_region_order),
        ENV_TEST(test_control_characters_in_config),
        ENV_TEST(test_control_characters_in_env),
        ENV_TEST(test_control_characters_in_files),
        ENV_TEST(test_plan_precedence),
        ENV_TEST(test_plan_container_hosts),
        ENV_TEST(test_plan_roles),
        ENV_TEST(test_plan_process_and_sso),
    };
    int failed = cmocka_run_group_tests_name("ini", ini, NULL, NULL);

    failed += cmocka_run_group_tests_name("credentials", chain, NULL, NULL);
    return failed != 0;
}
