/*
 * engine/cred_process.c: splitting a credential_process command line as
 * the AWS CLI does, and running one with real small commands: output read,
 * exit status, a hang killed at its timeout (with the grandchild holding
 * the pipe), a flood cut at the cap, a binary that is not there, stdin on
 * /dev/null, no shell in between.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "creds.h"

static char **split_ok(const char *cmd, int want_n)
{
    char **argv = NULL;
    ddbk_error err;
    int n = 0;

    if (ddbk__process_split(cmd, &argv, &err) != 0)
        fail_msg("split of [%s] failed: %s", cmd, err.message);
    while (argv[n] != NULL)
        n++;
    assert_int_equal(n, want_n);
    return argv;
}

static void test_split_words(void **state)
{
    char **a;

    (void)state;
    a = split_ok("  /usr/bin/helper   --profile dev\t--json ", 4);
    assert_string_equal(a[0], "/usr/bin/helper");
    assert_string_equal(a[1], "--profile");
    assert_string_equal(a[2], "dev");
    assert_string_equal(a[3], "--json");
    ddbk__process_argv_free(a);

    a = split_ok("helper \"two words\" 'single $HOME \\n' a\"b c\"d", 4);
    assert_string_equal(a[1], "two words");
    assert_string_equal(a[2], "single $HOME \\n");  /* literal in single quotes */
    assert_string_equal(a[3], "ab cd");              /* quotes glue to the word */
    ddbk__process_argv_free(a);

    a = split_ok("helper \"say \\\"hi\\\" \\\\ \\x\" back\\ slash", 3);
    assert_string_equal(a[1], "say \"hi\" \\ \\x");  /* \x kept inside "..." */
    assert_string_equal(a[2], "back slash");
    ddbk__process_argv_free(a);

    /* Shell syntax is only text: no pipes, no expansion. */
    a = split_ok("helper ; rm -rf / | cat $(id) `id`", 9);
    assert_string_equal(a[1], ";");
    assert_string_equal(a[7], "$(id)");
    ddbk__process_argv_free(a);

    a = split_ok("x \"\" ''", 3);
    assert_string_equal(a[1], "");
    assert_string_equal(a[2], "");
    ddbk__process_argv_free(a);
}

static void split_fails(const char *cmd, const char *want)
{
    char **argv = (char **)1;
    ddbk_error err;

    assert_int_equal(ddbk__process_split(cmd, &argv, &err), -1);
    assert_null(argv);
    assert_string_equal(err.code, "InvalidArgument");
    if (strstr(err.message, want) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.message, want);
}

static void test_split_refusals(void **state)
{
    (void)state;
    split_fails("", "empty command");
    split_fails("   \t ", "empty command");
    split_fails("helper 'open", "unterminated single quote");
    split_fails("helper \"open \\\"", "unterminated double quote");
    split_fails(NULL, "empty command");
}

static int run(const char *const *argv, long timeout_ms, size_t cap, ddbk_buf *out,
               const char **what)
{
    ddbk_buf_init(out, 0);
    return ddbk__process_run((char *const *)argv, timeout_ms, cap, out, what);
}

static void test_run_output_and_status(void **state)
{
    const char *argv[] = {"/bin/sh", "-c", "printf '{\"Version\": 1}'; exit 0", NULL};
    const char *argv3[] = {"/bin/sh", "-c", "printf partial; exit 3", NULL};
    const char *what;
    ddbk_buf out;

    (void)state;
    assert_int_equal(run(argv, 5000, 65536, &out, &what), 0);
    assert_int_equal(out.len, 14);
    assert_memory_equal(out.data, "{\"Version\": 1}", 14);
    ddbk_buf_free(&out);

    assert_int_equal(run(argv3, 5000, 65536, &out, &what), 3);
    assert_memory_equal(out.data, "partial", 7);
    ddbk_buf_free(&out);
}

static void test_run_stdin_is_dev_null(void **state)
{
    /* cat reads stdin: /dev/null ends it at once, nothing is echoed. */
    const char *argv[] = {"cat", NULL};
    const char *what;
    ddbk_buf out;

    (void)state;
    assert_int_equal(run(argv, 5000, 65536, &out, &what), 0);
    assert_int_equal(out.len, 0);
    ddbk_buf_free(&out);
}

static void test_run_no_shell(void **state)
{
    /* The argument reaches the program as it is: no expansion. */
    const char *argv[] = {"printf", "%s", "$HOME;`id`", NULL};
    const char *what;
    ddbk_buf out;

    (void)state;
    assert_int_equal(run(argv, 5000, 65536, &out, &what), 0);
    assert_string_equal(out.data, "$HOME;`id`");
    ddbk_buf_free(&out);
}

static void test_run_timeout(void **state)
{
    /* The grandchild (sleep in the background) holds the pipe too: only a
     * kill of the whole group ends the read. */
    const char *argv[] = {"/bin/sh", "-c", "sleep 30 & sleep 30", NULL};
    const char *what;
    ddbk_buf out;

    (void)state;
    assert_int_equal(run(argv, 200, 65536, &out, &what), -1);
    assert_non_null(what);
    assert_string_equal(what, "timed out");
    ddbk_buf_free(&out);
}

static void test_run_flood(void **state)
{
    /* 1 MB on stdout against a 64 KB cap. */
    const char *argv[] = {"/bin/sh", "-c", "head -c 1048576 /dev/zero", NULL};
    const char *what;
    ddbk_buf out;

    (void)state;
    assert_int_equal(run(argv, 10000, 65536, &out, &what), -1);
    assert_string_equal(what, "wrote more output than allowed");
    assert_true(out.len <= 65536);
    ddbk_buf_free(&out);
}

static void test_run_missing_binary(void **state)
{
    const char *argv[] = {"/nonexistent/ddbkit-helper", "--x", NULL};
    const char *what;
    ddbk_buf out;

    (void)state;
    assert_int_equal(run(argv, 5000, 65536, &out, &what), -1);
    assert_non_null(strstr(what, "could not be started"));
    ddbk_buf_free(&out);

    assert_int_equal(ddbk__process_run(NULL, 5000, 10, &out, &what), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_words),
        cmocka_unit_test(test_split_refusals),
        cmocka_unit_test(test_run_output_and_status),
        cmocka_unit_test(test_run_stdin_is_dev_null),
        cmocka_unit_test(test_run_no_shell),
        cmocka_unit_test(test_run_timeout),
        cmocka_unit_test(test_run_flood),
        cmocka_unit_test(test_run_missing_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
