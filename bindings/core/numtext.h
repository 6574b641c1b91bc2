/*
 * DynamoDB's number text (N): how a Lua number is written, how an N is read
 * back as an integer, a number or a decimal, and when two texts are the same
 * number. Always in the C locale, whatever the host's LC_NUMERIC.
 */
#ifndef DDBKIT_LUA_NUMTEXT_H
#define DDBKIT_LUA_NUMTEXT_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* Longest text ddbk__fmt_double / ddbk__fmt_int write, plus the NUL. */
#define DDBK_NUMBUF 32

/* Writes n in decimal (no printf); returns the length. */
size_t ddbk__fmt_int(int64_t n, char buf[DDBK_NUMBUF]);

/* Writes a finite double as the shortest of %.15g, %.16g and %.17g that
 * reads back to the same double, always with '.' as the decimal point
 * whatever the C locale; integral values below 2^53 are written as plain
 * integers ("10", not "1e+01"). Returns the length. */
size_t ddbk__fmt_double(double d, char buf[DDBK_NUMBUF]);

/* strtod in the C locale, on n bytes that need not be NUL-terminated (a
 * short text is copied to the C stack, a long one to a Lua string that is
 * popped again: nothing to free if a memory error unwinds). Sets *ok to 0
 * when the n bytes are not, all of them, a number. */
double ddbk__strtod(lua_State *L, const char *s, size_t n, int *ok);

/* Parses an integer text (optional '-', digits only) into *out; 0 when it is
 * not one or does not fit int64. */
int ddbk__parse_int64(const char *s, size_t n, int64_t *out);

/* A number text DynamoDB takes as N: optional sign, digits with at most one
 * '.', optional exponent ("-1.5e+3", ".5", "5." and "+5" all pass). Fills
 * *is_int when there is neither '.' nor an exponent. Returns 1 when valid. */
int ddbk__num_valid(const char *s, size_t n, int *is_int);

/* Compares the decimal values two valid number texts denote, exactly (no
 * rounding: sign, significant digits and decimal exponent). 1 when equal. */
int ddbk__num_text_equal(const char *a, size_t an, const char *b, size_t bn);

/* Pushes the Lua value for the DynamoDB N text s (already valid): an integer
 * (Lua 5.4, integer text that fits int64), else a number when the double
 * reads back as the same decimal value, else a decimal carrying s. The
 * decimal metatable is at dec_mt (an absolute index). */
void ddbk__push_n(lua_State *L, const char *s, size_t n, int dec_mt);

/* Pushes the canonical text of a valid number ("-123e5": sign, significant
 * digits, exponent), so that equal values give equal strings (a set's
 * duplicates). */
void ddbk__push_num_canon(lua_State *L, const char *s, size_t n);

/* Pushes a ddbkit.decimal of the text s (n bytes); its metatable is at
 * dec_mt (an absolute index). */
void ddbk__push_decimal(lua_State *L, const char *s, size_t n, int dec_mt);

#endif
