/*
 * Strict base64 for B and BS values coming back from DynamoDB.
 */
#ifndef DDBKIT_LUA_BASE64_H
#define DDBKIT_LUA_BASE64_H

#include <stddef.h>

/* 1 when s (n bytes) is canonical padded base64 (length a multiple of 4,
 * alphabet A-Z a-z 0-9 + /, at most two trailing '='); *pad gets the number
 * of '='. EVP_DecodeBlock alone accepts "Q===" and "QQ=A". */
int ddbk__b64_valid(const unsigned char *s, size_t n, int *pad);

/* Decodes s (n bytes) into out, which has room for n / 4 * 3 bytes, in one
 * pass that also validates: accepts exactly what ddbk__b64_valid accepts and
 * gives the bytes EVP_DecodeBlock would, less the padding. Returns the
 * decoded length, or -1 when s is not canonical padded base64. */
long ddbk__b64_decode(const unsigned char *s, size_t n, unsigned char *out);

#endif
