/* Thread-local error messages (as dlerror() keeps them) and the log sink. */
#include "graph/status.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define MESSAGE_MAX 2048

static _Thread_local char last_error[MESSAGE_MAX];

BST_API const char *bst_last_error(void) { return last_error; }

BST_API const char *bst_version(void) { return BST_VERSION_STRING; }

void bsti_set_error_v(const char *fmt, va_list ap) { vsnprintf(last_error, sizeof last_error, fmt, ap); }

bst_status bsti_fail(bst_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bsti_set_error_v(fmt, ap);
    va_end(ap);
    return status;
}

bst_status bsti_fail_context(bst_status status, const char *fmt, ...)
{
    char old[MESSAGE_MAX];
    memcpy(old, last_error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* Append ": <old>" by hand: the old message may be cut, which is fine for a message. */
    size_t used = n < 0 ? 0 : (size_t)n;
    if (used + 3 < sizeof last_error) {
        size_t room = sizeof last_error - used - 3;
        size_t old_len = strnlen(old, room);
        memcpy(last_error + used, ": ", 2);
        memcpy(last_error + used + 2, old, old_len);
        last_error[used + 2 + old_len] = '\0';
    }
    return status;
}

BST_API const char *bst_status_name(bst_status status)
{
    static const char *const names[] = {
        "BST_OK",           "BST_ERR_INVALID_ARG", "BST_ERR_OUT_OF_MEMORY", "BST_ERR_IO",
        "BST_ERR_FORMAT",   "BST_ERR_PARSE",       "BST_ERR_UNSUPPORTED",   "BST_ERR_ABI",
        "BST_ERR_NOT_FOUND", "BST_ERR_NO_DEVICE",  "BST_ERR_DEVICE_LOST",   "BST_ERR_DEVICE_OOM",
        "BST_ERR_COMPILE",  "BST_ERR_BACKEND",     "BST_ERR_OVERFLOW",      "BST_ERR_SHAPE",
        "BST_ERR_GRAPH",    "BST_ERR_INTERNAL",    "BST_ERR_TIMEOUT",
    };
    _Static_assert(sizeof names / sizeof names[0] == BST_STATUS_COUNT, "status name per status");
    if ((unsigned)status >= BST_STATUS_COUNT)
        return "BST_ERR_UNKNOWN";
    return names[status];
}

/* Log sink: a callback set by the embedder, else stderr from WARN up. Guarded by a mutex so a
 * callback change never races a message. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static bst_log_fn log_fn;
static void *log_user;
static bst_log_level log_min = BST_LOG_WARN;

BST_API void bst_set_log_callback(bst_log_fn fn, void *user, bst_log_level min_level)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_user = user;
    log_min = fn ? min_level : BST_LOG_WARN;
    pthread_mutex_unlock(&log_lock);
}

void bsti_log_v(bst_log_level level, const char *fmt, va_list ap)
{
    static const char *const level_names[] = {"debug", "info", "warning", "error"};
    char message[MESSAGE_MAX];
    vsnprintf(message, sizeof message, fmt, ap);
    pthread_mutex_lock(&log_lock);
    if (level >= log_min) {
        if (log_fn)
            log_fn(log_user, level, message);
        else
            fprintf(stderr, "bastion: %s: %s\n", level_names[level & 3], message);
    }
    pthread_mutex_unlock(&log_lock);
}

void bsti_log(bst_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bsti_log_v(level, fmt, ap);
    va_end(ap);
}
