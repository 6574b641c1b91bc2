/*
 * engine/buf.c: the growable buffer with a hard cap. Every append either fits
 * whole or fails and leaves the buffer as it was; the data is always
 * NUL-terminated; reset keeps the memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddbkit.h"

static void test_init_free(void **state)
{
    ddbk_buf b;

    (void)state;
    ddbk_buf_init(&b, 0);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, DDBK_BUF_DEFAULT_MAX);
    ddbk_buf_free(&b);
    assert_null(b.data);
    ddbk_buf_free(&b); /* twice is harmless */

    ddbk_buf_init(&b, 100);
    assert_int_equal(b.max, 100);
    ddbk_buf_free(&b);
}

static void test_append_and_terminate(void **state)
{
    ddbk_buf b;

    (void)state;
    ddbk_buf_init(&b, 0);
    assert_int_equal(ddbk_buf_append(&b, "hello", 5), 0);
    assert_int_equal(b.len, 5);
    assert_non_null(b.data);
    assert_string_equal(b.data, "hello");
    assert_true(b.cap > b.len);

    /* Binary data, embedded NUL kept; the terminator is after len. */
    assert_int_equal(ddbk_buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "helloa\0b", 8);
    assert_int_equal(b.data[8], '\0');

    /* Zero-length append is fine and still terminates. */
    assert_int_equal(ddbk_buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 8);
    assert_int_equal(b.data[8], '\0');
    ddbk_buf_free(&b);

    /* A zero-length append on an empty buffer gives an empty C string. */
    ddbk_buf_init(&b, 0);
    assert_int_equal(ddbk_buf_append(&b, NULL, 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    ddbk_buf_free(&b);
}

static void test_putc_puts(void **state)
{
    ddbk_buf b;
    char want[2001];

    (void)state;
    ddbk_buf_init(&b, 0);
    /* Past several growths: every byte lands, terminator always there. */
    for (int i = 0; i < 2000; i++) {
        char ch = (char)('a' + i % 26);
        want[i] = ch;
        assert_int_equal(ddbk_buf_putc(&b, ch), 0);
        assert_int_equal(b.len, (size_t)i + 1);
        assert_int_equal(b.data[b.len], '\0');
    }
    want[2000] = '\0';
    assert_string_equal(b.data, want);
    assert_true(b.cap >= b.len + 1);

    ddbk_buf_reset(&b);
    assert_int_equal(ddbk_buf_puts(&b, "abc"), 0);
    assert_int_equal(ddbk_buf_puts(&b, ""), 0);
    assert_int_equal(ddbk_buf_puts(&b, "def"), 0);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "abcdef");
    ddbk_buf_free(&b);
}

static void test_printf(void **state)
{
    ddbk_buf b;

    (void)state;
    ddbk_buf_init(&b, 0);
    assert_int_equal(ddbk_buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "42-x");
    assert_int_equal(b.len, 4);
    assert_int_equal(ddbk_buf_printf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 4);
    assert_int_equal(ddbk_buf_printf(&b, "[%05.1f]", 3.14159), 0);
    assert_string_equal(b.data, "42-x[003.1]");
    ddbk_buf_free(&b);
}

/* The formatted text does not fit the 256-byte scratch: the second path. */
static void test_printf_long(void **state)
{
    ddbk_buf b;
    char big[1001];

    (void)state;
    big[1000] = '\0';
    for (int i = 0; i < 1000; i++)
        big[i] = (char)('A' + i % 26);

    static const size_t sizes[] = {250, 251, 252, 253, 254, 255, 256, 257,
                                   258, 300, 511, 512, 513, 999, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        ddbk_buf_init(&b, 0);
        assert_int_equal(ddbk_buf_puts(&b, "pre:"), 0);
        assert_int_equal(ddbk_buf_printf(&b, "%.*s|%d", (int)n, big, 7), 0);
        assert_int_equal(b.len, 4 + n + 2);
        assert_memory_equal(b.data, "pre:", 4);
        assert_memory_equal(b.data + 4, big, n);
        assert_memory_equal(b.data + 4 + n, "|7", 2);
        assert_int_equal(b.data[b.len], '\0');
        assert_int_equal(strlen(b.data), b.len);
        /* And more after it. */
        assert_int_equal(ddbk_buf_putc(&b, '!'), 0);
        assert_int_equal(b.data[b.len - 1], '!');
        assert_int_equal(b.data[b.len], '\0');
        ddbk_buf_free(&b);
    }

    /* Exactly 255 and 256 characters, either side of the scratch. */
    for (int n = 255; n <= 257; n++) {
        ddbk_buf_init(&b, 0);
        assert_int_equal(ddbk_buf_printf(&b, "%.*s", n, big), 0);
        assert_int_equal(b.len, (size_t)n);
        assert_memory_equal(b.data, big, (size_t)n);
        assert_int_equal(b.data[n], '\0');
        ddbk_buf_free(&b);
    }
}

static void test_cap_append(void **state)
{
    ddbk_buf b;

    (void)state;
    ddbk_buf_init(&b, 10);
    assert_int_equal(ddbk_buf_append(&b, "0123456", 7), 0);
    /* 7 + 4 > 10: fails whole, nothing appended. */
    assert_int_equal(ddbk_buf_append(&b, "abcd", 4), -1);
    assert_int_equal(b.len, 7);
    assert_string_equal(b.data, "0123456");
    /* Exactly to the cap is allowed. */
    assert_int_equal(ddbk_buf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456abc");
    assert_true(b.cap <= 11); /* never allocates past max + terminator */
    /* Full: nothing more fits, by any route. */
    assert_int_equal(ddbk_buf_putc(&b, 'x'), -1);
    assert_int_equal(ddbk_buf_puts(&b, "x"), -1);
    assert_int_equal(ddbk_buf_printf(&b, "%d", 1), -1);
    assert_int_equal(ddbk_buf_append(&b, "x", 1), -1);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456abc");
    /* Zero bytes still fit. */
    assert_int_equal(ddbk_buf_append(&b, "", 0), 0);
    ddbk_buf_free(&b);

    /* An append bigger than max from empty. */
    ddbk_buf_init(&b, 10);
    assert_int_equal(ddbk_buf_append(&b, "0123456789A", 11), -1);
    assert_int_equal(b.len, 0);
    /* A size that would overflow len + n. */
    assert_int_equal(ddbk_buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(ddbk_buf_append(&b, "x", 1), 0);
    assert_int_equal(ddbk_buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(ddbk_buf_reserve(&b, SIZE_MAX - 1), -1);
    assert_int_equal(b.len, 1);
    ddbk_buf_free(&b);
}

static void test_cap_putc(void **state)
{
    ddbk_buf b;

    (void)state;
    /* putc's fast path must respect the cap too. */
    ddbk_buf_init(&b, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ddbk_buf_putc(&b, 'x'), 0);
    assert_int_equal(ddbk_buf_putc(&b, 'y'), -1);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "xxxxx");
    ddbk_buf_free(&b);

    /* A cap that is not a power of two and exceeds the first 256 block. */
    ddbk_buf_init(&b, 300);
    for (int i = 0; i < 300; i++)
        assert_int_equal(ddbk_buf_putc(&b, 'q'), 0);
    assert_int_equal(ddbk_buf_putc(&b, 'q'), -1);
    assert_int_equal(b.len, 300);
    assert_int_equal(b.data[300], '\0');
    assert_true(b.cap <= 301);
    ddbk_buf_free(&b);
}

/* ddbk_call lowers body.max on a buffer that may already have grown (a
 * response reused across clients); the cap must hold for every append
 * route, putc's no-call fast path included. */
static void test_cap_lowered_after_growth(void **state)
{
    ddbk_buf b;
    int rc;

    (void)state;
    ddbk_buf_init(&b, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ddbk_buf_puts(&b, "0123456789"), 0);
    ddbk_buf_reset(&b);
    b.max = 4;
    assert_int_equal(ddbk_buf_append(&b, "abcde", 5), -1);
    assert_int_equal(ddbk_buf_append(&b, "abcd", 4), 0);
    assert_int_equal(ddbk_buf_append(&b, "e", 1), -1);
    assert_int_equal(ddbk_buf_printf(&b, "e"), -1);
    rc = ddbk_buf_putc(&b, 'e');
    assert_int_equal(b.len, 4);
    assert_int_equal(rc, -1);
    ddbk_buf_free(&b);
}

static void test_cap_printf(void **state)
{
    ddbk_buf b;
    char big[600];

    (void)state;
    memset(big, 'w', sizeof big - 1);
    big[sizeof big - 1] = '\0';

    /* Short formatted text past the cap. */
    ddbk_buf_init(&b, 8);
    assert_int_equal(ddbk_buf_puts(&b, "abcde"), 0);
    assert_int_equal(ddbk_buf_printf(&b, "%s", "1234"), -1);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "abcde");
    assert_int_equal(ddbk_buf_printf(&b, "%s", "123"), 0);
    assert_string_equal(b.data, "abcde123");
    ddbk_buf_free(&b);

    /* Long formatted text (second path) past the cap. */
    ddbk_buf_init(&b, 500);
    assert_int_equal(ddbk_buf_puts(&b, "head"), 0);
    assert_int_equal(ddbk_buf_printf(&b, "%s", big), -1);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "head");
    assert_int_equal(ddbk_buf_printf(&b, "%.496s", big), 0);
    assert_int_equal(b.len, 500);
    assert_int_equal(b.data[500], '\0');
    ddbk_buf_free(&b);
}

static void test_reset_keeps_memory(void **state)
{
    ddbk_buf b;

    (void)state;
    ddbk_buf_init(&b, 0);
    ddbk_buf_reset(&b); /* on an empty buffer: no crash, nothing allocated */
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    for (int i = 0; i < 100; i++)
        assert_int_equal(ddbk_buf_puts(&b, "0123456789"), 0);
    char *p = b.data;
    size_t cap = b.cap;
    assert_true(cap >= 1001);
    ddbk_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, p);
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.data, "");
    /* Refill to the same size: no reallocation needed. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(ddbk_buf_puts(&b, "abcdefghij"), 0);
    assert_ptr_equal(b.data, p);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.len, 1000);
    assert_int_equal(strlen(b.data), 1000);
    ddbk_buf_free(&b);
}

static void test_reserve(void **state)
{
    ddbk_buf b;

    (void)state;
    ddbk_buf_init(&b, 0);
    assert_int_equal(ddbk_buf_reserve(&b, 5000), 0);
    assert_true(b.cap >= 5001);
    assert_int_equal(b.len, 0);
    char *p = b.data;
    for (int i = 0; i < 5000; i++)
        assert_int_equal(ddbk_buf_putc(&b, 'r'), 0);
    assert_ptr_equal(b.data, p); /* reserved: no move */
    assert_int_equal(b.data[5000], '\0');
    ddbk_buf_free(&b);

    /* A buffer zeroed without init behaves as the default cap. */
    memset(&b, 0, sizeof b);
    assert_int_equal(ddbk_buf_puts(&b, "zeroed"), 0);
    assert_string_equal(b.data, "zeroed");
    assert_int_equal(ddbk_buf_reserve(&b, DDBK_BUF_DEFAULT_MAX), -1);
    ddbk_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_free),
        cmocka_unit_test(test_append_and_terminate),
        cmocka_unit_test(test_putc_puts),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_long),
        cmocka_unit_test(test_cap_append),
        cmocka_unit_test(test_cap_putc),
        cmocka_unit_test(test_cap_printf),
        cmocka_unit_test(test_cap_lowered_after_growth),
        cmocka_unit_test(test_reset_keeps_memory),
        cmocka_unit_test(test_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
