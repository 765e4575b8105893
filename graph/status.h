/*
 * graph/status.h — the thread-local error message behind bst_last_error(), and logging.
 * Every layer (graph, runtime, host services for plugins) reports failures through bsti_fail so
 * the message a caller reads always belongs to the status it got.
 */
#ifndef BASTION_GRAPH_STATUS_H
#define BASTION_GRAPH_STATUS_H

#include <bastion/bastion.h>
#include <stdarg.h>

/* Sets this thread's error message and returns `status`: `return bsti_fail(BST_ERR_X, ...)`. */
bst_status bsti_fail(bst_status status, const char *fmt, ...) BST_PRINTF(2, 3);
void bsti_set_error_v(const char *fmt, va_list ap);
/* Prefixes the current message: "context: <old message>". Returns `status`. */
bst_status bsti_fail_context(bst_status status, const char *fmt, ...) BST_PRINTF(2, 3);

void bsti_log(bst_log_level level, const char *fmt, ...) BST_PRINTF(2, 3);
void bsti_log_v(bst_log_level level, const char *fmt, va_list ap);

#endif /* BASTION_GRAPH_STATUS_H */
