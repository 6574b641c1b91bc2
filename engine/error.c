/*
 * Errors as values. The engine fills a ddbk_error; it never prints, never
 * aborts, and never copies a credential into one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ddbkit.h"

void ddbk_error_clear(ddbk_error *e)
{
    memset(e, 0, sizeof *e);
}

void ddbk_error_set(ddbk_error *e, const char *code, long status,
                    const char *fmt, ...)
{
    va_list ap;

    ddbk_error_clear(e);
    snprintf(e->code, sizeof e->code, "%s", code);
    e->status = status;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

int ddbk_error_is(const ddbk_error *e, const char *code)
{
    return e && code && strcmp(e->code, code) == 0;
}

void ddbk_error_transport(ddbk_error *err, int timed_out, const char *what)
{
    ddbk_error_set(err, timed_out ? DDBK_ERR_TIMEOUT : DDBK_ERR_CONNECTION, 0, "%s",
                   what ? what : "transport failure");
    err->retryable = 1;
    err->timeout = timed_out;
}
