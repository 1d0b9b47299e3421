/* status.c - filling msv_error. */
#include <stdarg.h>
#include <stdio.h>

#include "graph.h"

msv_status msv_set_error(msv_error *err, msv_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}
