/*
 * engine/json.c: the engine's one JSON string writer. Its escapes, its
 * refusals (the UTF-8 that DynamoDB refuses), and a property test over
 * random bytes: the writer refuses exactly what an independent decoder
 * calls invalid, and what it writes parses back (yajl) to the very bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "json.h"

static void test_escapes(void **state)
{
    ddbk_buf b;
    (void)state;
    ddbk_buf_init(&b, 0);
    assert_int_equal(ddbk__json_cstr(&b, "a\"b\\c\n\x01\x1f\t\r\b\f /é✓\x7f"), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\\u001f\\t\\r\\b\\f /é✓\x7f\"");
    /* Appends: what was there stays. */
    assert_int_equal(ddbk__json_cstr(&b, ""), 0);
    assert_string_equal(b.data + b.len - 2, "\"\"");
    ddbk_buf_reset(&b);
    /* A NUL byte inside a counted string is escaped, not an end. */
    assert_int_equal(ddbk__json_str(&b, "a\0b", 3), 0);
    assert_string_equal(b.data, "\"a\\u0000b\"");
    ddbk_buf_free(&b);
}

static void test_refusals_leave_the_buffer_whole(void **state)
{
    static const char *const bad[] = {
        "\xff", "\x80", "a\xc3", "\xc0\xaf", "\xc1\xbf",   /* stray, cut, overlong 2-byte */
        "\xe0\x80\xaf", "\xe0\x9f\xbf",                   /* overlong 3-byte */
        "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf",           /* overlong 4-byte */
        "\xed\xa0\x80", "\xed\xbf\xbf",                   /* surrogates */
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",  /* past U+10FFFF */
        "\xe2\x82", "ok\xe2\x82\"",                        /* cut short */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ddbk_buf b;
        ddbk_buf_init(&b, 0);
        assert_int_equal(ddbk_buf_puts(&b, "{\"k\":"), 0);
        assert_int_equal(ddbk__json_cstr(&b, bad[i]), -2);
        assert_string_equal(b.data, "{\"k\":");
        assert_int_equal(b.len, 5);
        ddbk_buf_free(&b);
    }
    /* The edges of each length are valid. */
    static const char *const good[] = {
        "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ddbk_buf b;
        ddbk_buf_init(&b, 0);
        assert_int_equal(ddbk__json_cstr(&b, good[i]), 0);
        ddbk_buf_free(&b);
    }
}

static void test_cap_refuses_whole(void **state)
{
    ddbk_buf b;
    (void)state;
    ddbk_buf_init(&b, 16);
    assert_int_equal(ddbk_buf_puts(&b, "[1,"), 0);
    assert_int_equal(ddbk__json_cstr(&b, "\"\"\"\"\"\"\"\""), -1); /* 18 bytes escaped */
    assert_string_equal(b.data, "[1,");
    ddbk_buf_free(&b);
}

/* An independent decoder: code point by code point, by the definition. */
static int reference_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + len > n)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* Random strings biased towards the interesting bytes. */
static size_t random_string(unsigned char *s, size_t cap, uint64_t *x)
{
    static const unsigned char picks[] = {
        0x00, 0x01, 0x1f, '"', '\\', 'a', 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
        0xe0, 0xa0, 0x9f, 0xed, 0xef, 0xf0, 0x90, 0x8f, 0xf4, 0xf5, 0xff,
    };
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = (size_t)(*x >> 33) % cap;
    for (size_t i = 0; i < n; i++) {
        *x = *x * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(*x >> 40);
        s[i] = (r & 1) ? picks[(r >> 1) % sizeof picks] : (unsigned char)(r >> 8);
    }
    return n;
}

static void test_random_bytes_round_trip(void **state)
{
    uint64_t x = 12345;
    unsigned char s[24];
    int valid = 0;
    (void)state;
    for (int round = 0; round < 200000; round++) {
        size_t n = random_string(s, sizeof s, &x);
        ddbk_buf b;
        ddbk_buf_init(&b, 0);
        assert_int_equal(ddbk_buf_putc(&b, '['), 0);
        int r = ddbk__json_str(&b, (const char *)s, n);
        int want = reference_valid(s, n);
        if ((r == 0) != want)
            fail_msg("round %d: writer %d, reference %d", round, r, want);
        if (r == 0) {
            valid++;
            assert_int_equal(ddbk_buf_putc(&b, ']'), 0);
            char why[128];
            yajl_val v = yajl_tree_parse(b.data, why, sizeof why);
            if (!v || !YAJL_IS_ARRAY(v) || v->u.array.len != 1 ||
                !YAJL_IS_STRING(v->u.array.values[0]))
                fail_msg("round %d: not one JSON string: %s (%s)", round, b.data, why);
            /* yajl's strings end at a NUL: compare what comes before it */
            const char *back = YAJL_GET_STRING(v->u.array.values[0]);
            size_t upto = strnlen((const char *)s, n);
            if (strlen(back) != upto || memcmp(back, s, upto) != 0)
                fail_msg("round %d: %s did not read back", round, b.data);
            yajl_tree_free(v);
        } else {
            assert_int_equal(b.len, 1); /* nothing written */
        }
        ddbk_buf_free(&b);
    }
    assert_true(valid > 1000); /* the generator reaches both sides */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_refusals_leave_the_buffer_whole),
        cmocka_unit_test(test_cap_refuses_whole),
        cmocka_unit_test(test_random_bytes_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
