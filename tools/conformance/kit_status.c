/*
 * tools/conformance/kit_status.c — the one runtime-internal service graph/quant.c needs
 * (bsti_fail), for the copy of the reference quantizer compiled into the `bastion` command.
 * The command links the shared libbastion, which keeps its bsti_ names hidden; the conformance
 * harness needs the reference quantizer to write quantized inputs and to check QUANTIZE
 * outputs byte for byte. The message is kept per thread, as the core's bst_last_error does.
 */
#include "graph/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char kit_error[1024];

bst_status bsti_fail(bst_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kit_error, sizeof kit_error, fmt, ap);
    va_end(ap);
    return status;
}
