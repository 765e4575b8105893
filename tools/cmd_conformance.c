/*
 * tools/cmd_conformance.c — `bastion conformance`: the op conformance suite of test_backend_ops
 * (tools/conformance/) and the ABI checks, run against one plugin in worker processes that are
 * restarted after a crash or a hang, with a per-case report (text, and JSON with --json).
 *
 * The parent never calls into the plugin: it counts the cases (no device needed), starts
 * `/proc/self/exe conformance --worker abi|ops ...`, sends it the cases to run on its stdin and
 * reads its records from a pipe on fd 3 (the protocol is in tools/conformance/kit.h). A worker that
 * dies or stays silent past the per-case timeout is killed; the running case is reported as crash /
 * timeout (with the tail of the worker's stderr, where LLVM and the C library write their last
 * words), and a new worker starts at the next case.
 */
#define _DEFAULT_SOURCE /* realpath (PATH_MAX buffer), strsignal, fdopen, kill */

#include "cli.h"
#include "kit.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD "conformance"
#define RECORD_FD 3
#define DEFAULT_TIMEOUT_S 60

void cli_usage_conformance(FILE *out)
{
    fprintf(out,
            "Usage: bastion conformance --backend NAME [--plugin-path DIR_OR_FILE] [--op LIST]\n"
            "                           [--json FILE] [--timeout SECONDS] [--no-abi]\n"
            "\n"
            "Runs the op conformance suite (the cases of test_backend_ops: every op x dtype x\n"
            "shape x layout) on every device of one backend plugin, comparing each output with\n"
            "a double-precision oracle and with the CPU backend's reference kernels, with guard\n"
            "bytes around every tensor; and checks the plugin's ABI (exported symbols, version\n"
            "negotiation with an older and a newer host, struct_size handling). Cases run in a\n"
            "worker process: a crash or a hang is reported against its case and the run goes on\n"
            "at the next one. The plugin need not be built with Bastion.\n"
            "\n"
            "Options:\n"
            "  --backend NAME          the plugin under test (libbst-backend-NAME.so)\n"
            "  --plugin-path P         a directory searched first for the plugin, or the plugin\n"
            "                          file itself (then --backend defaults to its name)\n"
            "  --op LIST               only these ops, comma-separated (e.g. matmul,rms_norm)\n"
            "  --json FILE             write the report as JSON (\"-\" for stdout)\n"
            "  --timeout SECONDS       per-case limit before the worker is killed (default %d)\n"
            "  --no-abi                skip the ABI checks\n"
            "  -h, --help              show this help\n"
            "\n"
            "Per case and kernel variant the result is pass, fail (wrong values, NaN, a byte\n"
            "written outside its output, an API error), unsupported (query offered no variant:\n"
            "not a failure), crash, timeout or error (the suite itself could not build or check\n"
            "the case, e.g. out of memory). Exit status: 0 when every case the plugin claims\n"
            "passes and every ABI check passes, 1 otherwise, 2 on a usage error.\n"
            "\n"
            "JSON report (schema \"" KIT_SCHEMA "\"; fields are only ever added):\n"
            "  schema, bastion_version, backend, timeout_s\n"
            "  plugin      {name, path, version, abi_version, state, detail} as the loader saw it\n"
            "  devices     [{label, name}] the plugin's devices under test\n"
            "  abi_checks  [{name, result: pass|fail, detail}]\n"
            "  cases       [{case, op, dtype, what, device, variant,\n"
            "                result: pass|fail|unsupported|crash|timeout|error,\n"
            "                nmse_ref (vs the CPU reference kernels, null if not compared),\n"
            "                nmse_oracle (vs the double-precision oracle), time_ns (execute\n"
            "                wall time), detail (why it failed)}]\n"
            "  summary     {cases_selected, cases_run, pass, fail, unsupported, crash, timeout,\n"
            "               abi_fail, worker_restarts, error}\n"
            "  fatal       why the suite could not run (plugin not found, not loadable), or null\n"
            "  ok          the exit status was 0\n",
            DEFAULT_TIMEOUT_S);
}

/* --- the report ---------------------------------------------------------------------------- */

typedef struct row {
    uint64_t case_no;
    char *op, *dtype, *what, *device, *variant, *result, *detail;
    double nmse_ref, nmse_oracle;
    int64_t time_ns; /* -1: none */
} row;

typedef struct report {
    row *rows;
    size_t n_rows, cap_rows;
    json_object *plugin, *devices, *checks;
    char *fatal;
    uint64_t selected, run, restarts;
    char crash_device[64]; /* where a crash is reported: the one device, else the backend */
    unsigned pass, fail, unsupported, crash, timeout, error, abi_fail;
} report;

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

static bool add_row(report *r, const row *src)
{
    if (r->n_rows == r->cap_rows) {
        size_t cap = r->cap_rows ? r->cap_rows * 2 : 256;
        row *v = realloc(r->rows, cap * sizeof *v);
        if (!v)
            return false;
        r->rows = v;
        r->cap_rows = cap;
    }
    r->rows[r->n_rows++] = *src;
    const char *res = src->result;
    if (strcmp(res, "pass") == 0)
        r->pass++;
    else if (strcmp(res, "unsupported") == 0)
        r->unsupported++;
    else if (strcmp(res, "crash") == 0)
        r->crash++;
    else if (strcmp(res, "timeout") == 0)
        r->timeout++;
    else if (strcmp(res, "error") == 0)
        r->error++;
    else
        r->fail++;
    return true;
}

static void report_free(report *r)
{
    for (size_t i = 0; i < r->n_rows; i++) {
        row *w = &r->rows[i];
        free(w->op);
        free(w->dtype);
        free(w->what);
        free(w->device);
        free(w->variant);
        free(w->result);
        free(w->detail);
    }
    free(r->rows);
    json_object_put(r->plugin);
    json_object_put(r->devices);
    json_object_put(r->checks);
    free(r->fatal);
}

static void set_fatal(report *r, const char *msg)
{
    if (!r->fatal)
        r->fatal = strdup(msg);
}

/* --- workers ------------------------------------------------------------------------------- */

typedef struct options {
    const char *backend;
    const char *plugin_dir;
    const char *ops;
    const char *json;
    uint64_t timeout_s;
    bool no_abi;
} options;

typedef struct worker_proc {
    pid_t pid;
    FILE *in;    /* records from the worker */
    FILE *req;   /* requests to the worker (its stdin) */
    int err_fd;  /* the worker's stderr (a temporary file) */
} worker_proc;

static bool spawn(const options *o, const char *kind, int err_fd, worker_proc *w)
{
    int fds[2], req[2];
    if (pipe(fds) != 0) {
        cli_error(CMD, "pipe: %s", strerror(errno));
        return false;
    }
    if (pipe(req) != 0) {
        cli_error(CMD, "pipe: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    /* The worker's stderr starts empty: its tail is what the report quotes after a crash. */
    if (ftruncate(err_fd, 0) != 0 || lseek(err_fd, 0, SEEK_SET) != 0) {
        cli_error(CMD, "cannot reset the worker's stderr file: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        close(req[0]);
        close(req[1]);
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        cli_error(CMD, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        close(req[0]);
        close(req[1]);
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        close(req[1]);
        signal(SIGPIPE, SIG_DFL);
        /* Any of the sources may sit on a target number (the stderr file on fd 3, say): move
         * them above the targets first. */
        int null_fd = open("/dev/null", O_RDWR);
        int rec = fcntl(fds[1], F_DUPFD, 10), err = fcntl(err_fd, F_DUPFD, 10);
        int in = fcntl(req[0], F_DUPFD, 10);
        int nul = null_fd < 0 ? -1 : fcntl(null_fd, F_DUPFD, 10);
        if (rec < 0 || err < 0 || in < 0 || nul < 0 || dup2(in, STDIN_FILENO) < 0 ||
            dup2(nul, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0 ||
            dup2(rec, RECORD_FD) < 0)
            _exit(127);
        const char *argv[16];
        int n = 0;
        argv[n++] = "bastion";
        argv[n++] = "conformance";
        argv[n++] = "--worker";
        argv[n++] = kind;
        argv[n++] = "--backend";
        argv[n++] = o->backend;
        if (o->plugin_dir) {
            argv[n++] = "--plugin-path";
            argv[n++] = o->plugin_dir;
        }
        if (o->ops) {
            argv[n++] = "--op";
            argv[n++] = o->ops;
        }
        argv[n] = NULL;
        execv("/proc/self/exe", (char *const *)(void *)argv);
        _exit(127);
    }
    close(fds[1]);
    close(req[0]);
    w->pid = pid;
    w->err_fd = err_fd;
    w->in = fdopen(fds[0], "r");
    w->req = fdopen(req[1], "w");
    if (!w->in || !w->req) {
        if (w->in)
            fclose(w->in);
        else
            close(fds[0]);
        if (w->req)
            fclose(w->req);
        else
            close(req[1]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cli_error(CMD, "fdopen: %s", strerror(errno));
        return false;
    }
    setvbuf(w->in, NULL, _IONBF, 0);
    return true;
}

/* Reads one record line within `timeout_ms`: 1 = line, 0 = end of file, -1 = timeout. */
static int read_record(worker_proc *w, char **line, size_t *cap, int timeout_ms)
{
    /* The stream is unbuffered (spawn), so poll sees every byte stdio has not consumed. */
    struct pollfd p = {fileno(w->in), POLLIN, 0};
    for (;;) {
        int rc = poll(&p, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            return -1;
        break;
    }
    ssize_t got = getline(line, cap, w->in);
    return got < 0 ? 0 : 1;
}

/* Ends the worker: kills it when asked, reaps it, and describes how it ended. */
static void finish(worker_proc *w, bool kill_it, char *how, size_t n)
{
    if (kill_it)
        kill(w->pid, SIGKILL);
    int status = 0;
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {
    }
    fclose(w->in);
    fclose(w->req); /* may fail with EPIPE when the worker is gone: nothing to do then */
    if (WIFSIGNALED(status))
        snprintf(how, n, "worker killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(how, n, "worker exited with status %d", WEXITSTATUS(status));
}

/* The last lines the worker wrote to stderr, on one line. */
static void stderr_tail(int fd, char *buf, size_t n)
{
    buf[0] = '\0';
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0)
        return;
    off_t from = end > (off_t)(n - 1) ? end - (off_t)(n - 1) : 0;
    ssize_t got = pread(fd, buf, n - 1, from);
    if (got <= 0)
        return;
    buf[got] = '\0';
    for (ssize_t i = 0; i < got; i++)
        if (buf[i] == '\n' || buf[i] == '\t' || buf[i] == '\r')
            buf[i] = (i + 1 < got) ? ' ' : '\0';
}

static json_object *plugin_json(char **f, int n)
{
    if (n < 7)
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(f[1]));
    json_object_object_add(o, "path", json_object_new_string(f[2]));
    json_object_object_add(o, "version", json_object_new_string(f[3]));
    json_object_object_add(o, "abi_version", json_object_new_int(atoi(f[4])));
    json_object_object_add(o, "state", json_object_new_string(f[5]));
    json_object_object_add(o, "detail", json_object_new_string(f[6]));
    return o;
}

static void note_plugin(report *r, char **f, int n)
{
    if (r->plugin || n < 7)
        return;
    r->plugin = plugin_json(f, n);
    char msg[1536];
    if (strcmp(f[5], "no-device") == 0) {
        snprintf(msg, sizeof msg, "plugin %s (%s) loaded but has no device here: %s", f[1], f[2],
                 f[6]);
        set_fatal(r, msg);
    } else if (strcmp(f[5], "loaded") != 0) {
        snprintf(msg, sizeof msg, "plugin %s (%s) was not loaded: %s: %s", f[1], f[2], f[5],
                 f[6]);
        set_fatal(r, msg);
    }
}

static void run_abi(const options *o, int err_fd, report *r)
{
    worker_proc w;
    if (!spawn(o, "abi", err_fd, &w)) {
        set_fatal(r, "cannot start the ABI worker");
        return;
    }
    char *line = NULL, *f[KIT_MAX_FIELDS];
    size_t cap = 0;
    bool ended = false, timed_out = false;
    for (;;) {
        int rc = read_record(&w, &line, &cap, (int)(o->timeout_s * 1000));
        if (rc <= 0) {
            timed_out = rc < 0;
            break;
        }
        int n = kit_split(line, f, KIT_MAX_FIELDS);
        if (strcmp(f[0], "PLUGIN") == 0) {
            note_plugin(r, f, n);
        } else if (strcmp(f[0], "CHECK") == 0 && n >= 4) {
            json_object *c = json_object_new_object();
            json_object_object_add(c, "name", json_object_new_string(f[1]));
            json_object_object_add(c, "result", json_object_new_string(f[2]));
            json_object_object_add(c, "detail", json_object_new_string(f[3]));
            json_object_array_add(r->checks, c);
            r->abi_fail += strcmp(f[2], "pass") != 0;
        } else if (strcmp(f[0], "FATAL") == 0 && n >= 2) {
            set_fatal(r, f[1]);
        } else if (strcmp(f[0], "END") == 0) {
            ended = true;
            break;
        }
    }
    free(line);
    char how[128], tail[512];
    finish(&w, !ended, how, sizeof how);
    if (!ended && !r->fatal) {
        stderr_tail(err_fd, tail, sizeof tail);
        char detail[1024];
        snprintf(detail, sizeof detail, "the ABI checks did not finish: %s%s%s",
                 timed_out ? "timed out, killed" : how, tail[0] ? "; stderr: " : "", tail);
        json_object *c = json_object_new_object();
        json_object_object_add(c, "name", json_object_new_string("abi_worker"));
        json_object_object_add(c, "result", json_object_new_string(timed_out ? "timeout"
                                                                             : "crash"));
        json_object_object_add(c, "detail", json_object_new_string(detail));
        json_object_array_add(r->checks, c);
        r->abi_fail++;
    }
}

typedef struct current {
    bool active;
    uint64_t case_no;
    char op[64], dtype[64], what[256];
} current;

static void progress(const report *r, const current *c, bool tty)
{
    if (!tty)
        return;
    fprintf(stderr, "\r\033[K[%llu/%llu] %s %s  pass %u fail %u crash %u",
            (unsigned long long)r->run, (unsigned long long)r->selected, c->op, c->dtype,
            r->pass, r->fail + r->timeout + r->error, r->crash);
}

/* A case that ended its worker: reported against the whole backend (the variant that was
 * running is unknown). */
static void add_abnormal(report *r, const current *c, const char *backend, const char *result,
                         const char *detail)
{
    row w;
    memset(&w, 0, sizeof w);
    w.case_no = c->case_no;
    w.op = dup_or_empty(c->op);
    w.dtype = dup_or_empty(c->dtype);
    w.what = dup_or_empty(c->what);
    w.device = dup_or_empty(backend);
    w.variant = dup_or_empty("-");
    w.result = dup_or_empty(result);
    w.detail = dup_or_empty(detail);
    w.nmse_ref = w.nmse_oracle = NAN;
    w.time_ns = -1;
    (void)add_row(r, &w);
}

static double parse_double(const char *s)
{
    char *end = NULL;
    double v = strtod(s, &end);
    return end && end != s ? v : NAN;
}

static void add_result(report *r, char **f, int n, const current *c)
{
    if (n < 9)
        return;
    row w;
    memset(&w, 0, sizeof w);
    uint64_t no = 0;
    (void)cli_parse_u64(f[1], &no);
    w.case_no = no;
    bool same = c->active && c->case_no == no;
    w.op = dup_or_empty(same ? c->op : "?");
    w.dtype = dup_or_empty(same ? c->dtype : "?");
    w.what = dup_or_empty(same ? c->what : "");
    w.device = dup_or_empty(f[2]);
    w.variant = dup_or_empty(f[3]);
    w.result = dup_or_empty(f[4]);
    w.nmse_ref = parse_double(f[5]);
    w.nmse_oracle = parse_double(f[6]);
    int64_t ns = -1;
    bool timed = strcmp(f[4], "unsupported") != 0 && strcmp(f[4], "error") != 0;
    w.time_ns = timed && cli_parse_i64(f[7], &ns) ? ns : -1;
    w.detail = dup_or_empty(f[8]);
    (void)add_row(r, &w);
}

static void run_ops(const options *o, int err_fd, report *r, bool tty)
{
    uint64_t start = 0;
    char *line = NULL, *f[KIT_MAX_FIELDS];
    size_t cap = 0;
    bool have_devices = false;
    for (;;) {
        worker_proc w;
        if (!spawn(o, "ops", err_fd, &w)) {
            set_fatal(r, "cannot start the ops worker");
            break;
        }
        /* The first request; each DONE is answered with the next. A write to a worker that
         * already died fails with EPIPE (SIGPIPE is ignored), and the read below sees the end. */
        fprintf(w.req, "RUN %llu\n", (unsigned long long)start);
        fflush(w.req);
        current c;
        memset(&c, 0, sizeof c);
        bool ended = false, timed_out = false;
        for (;;) {
            int rc = read_record(&w, &line, &cap, (int)(o->timeout_s * 1000));
            if (rc <= 0) {
                timed_out = rc < 0;
                break;
            }
            int n = kit_split(line, f, KIT_MAX_FIELDS);
            if (strcmp(f[0], "START") == 0 && n >= 5) {
                c.active = cli_parse_u64(f[1], &c.case_no);
                snprintf(c.op, sizeof c.op, "%s", f[2]);
                snprintf(c.dtype, sizeof c.dtype, "%s", f[3]);
                snprintf(c.what, sizeof c.what, "%s", f[4]);
                r->run++;
                progress(r, &c, tty);
            } else if (strcmp(f[0], "RESULT") == 0) {
                add_result(r, f, n, &c);
            } else if (strcmp(f[0], "DONE") == 0) {
                c.active = false;
                fprintf(w.req, "RUN %llu\n", (unsigned long long)(c.case_no + 1));
                fflush(w.req);
            } else if (strcmp(f[0], "DEVICE") == 0 && n >= 3 && start == 0) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "label", json_object_new_string(f[1]));
                json_object_object_add(d, "name", json_object_new_string(f[2]));
                json_object_array_add(r->devices, d);
                snprintf(r->crash_device, sizeof r->crash_device, "%s",
                         have_devices ? o->backend : f[1]);
                have_devices = true;
            } else if (strcmp(f[0], "PLUGIN") == 0) {
                note_plugin(r, f, n);
            } else if (strcmp(f[0], "FATAL") == 0 && n >= 2) {
                set_fatal(r, f[1]);
            } else if (strcmp(f[0], "END") == 0) {
                ended = true;
                break;
            }
        }
        char how[128], tail[512], detail[1024];
        finish(&w, !ended, how, sizeof how);
        if (ended)
            break;
        stderr_tail(err_fd, tail, sizeof tail);
        if (!c.active) {
            /* Died between cases: while loading the plugin or building a case. Starting again
             * would only repeat it. */
            snprintf(detail, sizeof detail, "the worker died outside any case (%s)%s%s",
                     timed_out ? "timed out" : how, tail[0] ? "; stderr: " : "", tail);
            set_fatal(r, detail);
            break;
        }
        snprintf(detail, sizeof detail, "%s%s%s",
                 timed_out ? "no answer within the per-case timeout; worker killed" : how,
                 tail[0] ? "; stderr: " : "", tail);
        add_abnormal(r, &c, r->crash_device[0] ? r->crash_device : o->backend,
                     timed_out ? "timeout" : "crash", detail);
        start = c.case_no + 1;
        r->restarts++;
    }
    free(line);
    if (tty)
        fprintf(stderr, "\r\033[K");
}

/* --- output -------------------------------------------------------------------------------- */

static void print_text(const options *o, const report *r)
{
    printf("bastion conformance: backend %s\n", o->backend);
    if (r->plugin)
        printf("  plugin %s, version %s, ABI %d (%s)\n",
               json_object_get_string(json_object_object_get(r->plugin, "path")),
               json_object_get_string(json_object_object_get(r->plugin, "version")),
               json_object_get_int(json_object_object_get(r->plugin, "abi_version")),
               json_object_get_string(json_object_object_get(r->plugin, "state")));
    for (size_t i = 0; i < json_object_array_length(r->devices); i++) {
        json_object *d = json_object_array_get_idx(r->devices, i);
        printf("  device %s: %s\n", json_object_get_string(json_object_object_get(d, "label")),
               json_object_get_string(json_object_object_get(d, "name")));
    }
    /* Per (device, op, dtype) counts, in the order first seen. */
    if (r->n_rows)
        printf("\n  %-14s %-12s %-14s %6s %6s %6s %6s %6s\n", "device", "op", "dtype", "PASS",
               "FAIL", "CRASH", "TIME", "UNSUP");
    bool *done = calloc(r->n_rows ? r->n_rows : 1, sizeof *done);
    for (size_t i = 0; done && i < r->n_rows; i++) {
        if (done[i])
            continue;
        const row *a = &r->rows[i];
        unsigned k[5] = {0, 0, 0, 0, 0};
        for (size_t j = i; j < r->n_rows; j++) {
            const row *b = &r->rows[j];
            if (done[j] || strcmp(a->device, b->device) != 0 || strcmp(a->op, b->op) != 0 ||
                strcmp(a->dtype, b->dtype) != 0)
                continue;
            done[j] = true;
            const char *res = b->result;
            k[strcmp(res, "pass") == 0          ? 0
              : strcmp(res, "crash") == 0       ? 2
              : strcmp(res, "timeout") == 0     ? 3
              : strcmp(res, "unsupported") == 0 ? 4
                                                : 1]++;
        }
        printf("  %-14s %-12s %-14s %6u %6u %6u %6u %6u%s\n", a->device, a->op, a->dtype, k[0],
               k[1], k[2], k[3], k[4], k[1] + k[2] + k[3] ? "  <-- FAIL" : "");
    }
    free(done);
    unsigned shown = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        const row *w = &r->rows[i];
        if (strcmp(w->result, "pass") == 0 || strcmp(w->result, "unsupported") == 0)
            continue;
        if (shown++ == 0)
            printf("\nFailures:\n");
        if (shown > 40) {
            printf("  ... (see --json for all)\n");
            break;
        }
        printf("  case %llu %s %s %s [%s] variant %s: %s: %s\n", (unsigned long long)w->case_no,
               w->device, w->op, w->dtype, w->what, w->variant, w->result, w->detail);
    }
    size_t nc = json_object_array_length(r->checks);
    if (nc)
        printf("\nABI checks:\n");
    for (size_t i = 0; i < nc; i++) {
        json_object *c = json_object_array_get_idx(r->checks, i);
        printf("  %-20s %-5s %s\n", json_object_get_string(json_object_object_get(c, "name")),
               json_object_get_string(json_object_object_get(c, "result")),
               json_object_get_string(json_object_object_get(c, "detail")));
    }
    if (r->fatal)
        printf("\nFATAL: %s\n", r->fatal);
    printf("\ntotal: %llu of %llu cases run; %u pass, %u fail, %u crash, %u timeout, %u error, "
           "%u unsupported; %u ABI check(s) failed; %llu worker restart(s)\n",
           (unsigned long long)r->run, (unsigned long long)r->selected, r->pass, r->fail,
           r->crash, r->timeout, r->error, r->unsupported, r->abi_fail,
           (unsigned long long)r->restarts);
}

static json_object *num_or_null(double v)
{
    return isfinite(v) ? json_object_new_double(v) : NULL;
}

static bool write_json(const options *o, const report *r, bool ok)
{
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "schema", json_object_new_string(KIT_SCHEMA));
    json_object_object_add(doc, "bastion_version", json_object_new_string(bst_version()));
    json_object_object_add(doc, "backend", json_object_new_string(o->backend));
    json_object_object_add(doc, "timeout_s", json_object_new_int64((int64_t)o->timeout_s));
    json_object_object_add(doc, "plugin", r->plugin ? json_object_get(r->plugin) : NULL);
    json_object_object_add(doc, "devices", json_object_get(r->devices));
    json_object_object_add(doc, "abi_checks", json_object_get(r->checks));
    json_object *cases = json_object_new_array();
    for (size_t i = 0; i < r->n_rows; i++) {
        const row *w = &r->rows[i];
        json_object *c = json_object_new_object();
        json_object_object_add(c, "case", json_object_new_int64((int64_t)w->case_no));
        json_object_object_add(c, "op", json_object_new_string(w->op));
        json_object_object_add(c, "dtype", json_object_new_string(w->dtype));
        json_object_object_add(c, "what", json_object_new_string(w->what));
        json_object_object_add(c, "device", json_object_new_string(w->device));
        json_object_object_add(c, "variant", json_object_new_string(w->variant));
        json_object_object_add(c, "result", json_object_new_string(w->result));
        json_object_object_add(c, "nmse_ref", num_or_null(w->nmse_ref));
        json_object_object_add(c, "nmse_oracle", num_or_null(w->nmse_oracle));
        json_object_object_add(c, "time_ns",
                               w->time_ns >= 0 ? json_object_new_int64(w->time_ns) : NULL);
        json_object_object_add(c, "detail", json_object_new_string(w->detail));
        json_object_array_add(cases, c);
    }
    json_object_object_add(doc, "cases", cases);
    json_object *s = json_object_new_object();
    json_object_object_add(s, "cases_selected", json_object_new_int64((int64_t)r->selected));
    json_object_object_add(s, "cases_run", json_object_new_int64((int64_t)r->run));
    json_object_object_add(s, "pass", json_object_new_int64(r->pass));
    json_object_object_add(s, "fail", json_object_new_int64(r->fail));
    json_object_object_add(s, "unsupported", json_object_new_int64(r->unsupported));
    json_object_object_add(s, "crash", json_object_new_int64(r->crash));
    json_object_object_add(s, "timeout", json_object_new_int64(r->timeout));
    json_object_object_add(s, "abi_fail", json_object_new_int64(r->abi_fail));
    json_object_object_add(s, "worker_restarts", json_object_new_int64((int64_t)r->restarts));
    json_object_object_add(s, "error", json_object_new_int64(r->error));
    json_object_object_add(doc, "summary", s);
    json_object_object_add(doc, "fatal", r->fatal ? json_object_new_string(r->fatal) : NULL);
    json_object_object_add(doc, "ok", json_object_new_boolean(ok));
    const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    bool written;
    if (strcmp(o->json, "-") == 0) {
        written = printf("%s\n", text) >= 0;
    } else {
        FILE *f = fopen(o->json, "w");
        written = f && fprintf(f, "%s\n", text) >= 0;
        if (f && fclose(f) != 0)
            written = false;
        if (!written)
            cli_error(CMD, "cannot write %s: %s", o->json, strerror(errno));
    }
    json_object_put(doc);
    return written;
}

/* --- command line -------------------------------------------------------------------------- */

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* --plugin-path FILE: its directory is searched, and its name gives the backend. */
static int resolve_plugin_path(const char *arg, options *o, char *dir, size_t dir_n, char *name,
                               size_t name_n)
{
    (void)dir_n; /* realpath needs PATH_MAX bytes; the caller's buffer has them */
    size_t len = strlen(arg);
    bool is_file = len > 3 && strcmp(arg + len - 3, ".so") == 0;
    if (!is_file) {
        /* The loader searches absolute directories only. */
        if (!realpath(arg, dir)) {
            cli_error(CMD, "--plugin-path %s: %s", arg, strerror(errno));
            return CLI_EXIT_FAIL;
        }
        o->plugin_dir = dir;
        return CLI_EXIT_OK;
    }
    const char *slash = strrchr(arg, '/');
    const char *base = slash ? slash + 1 : arg;
    static const char prefix[] = "libbst-backend-";
    size_t bl = strlen(base);
    if (strncmp(base, prefix, sizeof prefix - 1) != 0 || bl <= sizeof prefix - 1 + 3)
        return cli_usage_error(CMD, "--plugin-path %s: a plugin file is named "
                                    "libbst-backend-NAME.so", arg);
    snprintf(name, name_n, "%.*s", (int)(bl - (sizeof prefix - 1) - 3), base + sizeof prefix - 1);
    if (o->backend && strcmp(o->backend, name) != 0)
        return cli_usage_error(CMD, "--plugin-path %s is backend '%s', not '%s'", arg, name,
                               o->backend);
    o->backend = name;
    char parent[4096];
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - arg) : 1, slash ? arg : ".");
    if (!realpath(parent[0] ? parent : "/", dir)) {
        cli_error(CMD, "--plugin-path %s: %s", arg, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    o->plugin_dir = dir;
    return CLI_EXIT_OK;
}

int cli_cmd_conformance(int argc, char **argv)
{
    enum { OPT_BACKEND = 256, OPT_PLUGIN, OPT_OP, OPT_JSON, OPT_TIMEOUT, OPT_NO_ABI, OPT_WORKER };
    static const struct option longopts[] = {
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"plugin-path", required_argument, NULL, OPT_PLUGIN},
        {"op", required_argument, NULL, OPT_OP},
        {"json", required_argument, NULL, OPT_JSON},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"no-abi", no_argument, NULL, OPT_NO_ABI},
        {"worker", required_argument, NULL, OPT_WORKER},
        {NULL, 0, NULL, 0},
    };
    options o;
    memset(&o, 0, sizeof o);
    o.timeout_s = DEFAULT_TIMEOUT_S;
    const char *plugin_arg = NULL, *worker = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_BACKEND: o.backend = optarg; break;
        case OPT_PLUGIN: plugin_arg = optarg; break;
        case OPT_OP: o.ops = optarg; break;
        case OPT_JSON: o.json = optarg; break;
        case OPT_NO_ABI: o.no_abi = true; break;
        case OPT_WORKER: worker = optarg; break;
        case OPT_TIMEOUT:
            if (!cli_parse_u64(optarg, &o.timeout_s) || o.timeout_s == 0 ||
                o.timeout_s > 86400)
                return cli_usage_error(CMD, "--timeout: expected seconds in 1..86400, got '%s'",
                                       optarg);
            break;
        default: return cli_getopt_error(CMD, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    char dir[PATH_MAX + 1], name[80];
    if (plugin_arg) {
        int rc = resolve_plugin_path(plugin_arg, &o, dir, sizeof dir, name, sizeof name);
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    if (!o.backend)
        return cli_usage_error(CMD, "--backend NAME is required");
    if (!valid_name(o.backend))
        return cli_usage_error(CMD, "--backend: '%s' is not a backend name (a-z, 0-9, _, -)",
                               o.backend);
    bool sel[BST_OP_COUNT];
    if (o.ops) {
        char why[128];
        if (!kit_parse_ops(o.ops, sel, why, sizeof why))
            return cli_usage_error(CMD, "--op: %s", why);
    }

    if (worker) {
        FILE *out = fdopen(RECORD_FD, "w");
        if (!out) {
            cli_error(CMD, "--worker runs only under `bastion conformance` (no record pipe)");
            return CLI_EXIT_USAGE;
        }
        kit_worker_args a = {o.backend, o.plugin_dir, o.ops ? sel : NULL, stdin, out};
        int rc;
        if (strcmp(worker, "ops") == 0)
            rc = kit_ops_worker(&a);
        else if (strcmp(worker, "abi") == 0)
            rc = kit_abi_worker(&a);
        else
            rc = cli_usage_error(CMD, "--worker: expected ops or abi, got '%s'", worker);
        fclose(out);
        return rc;
    }

    report r;
    memset(&r, 0, sizeof r);
    r.devices = json_object_new_array();
    r.checks = json_object_new_array();
    r.selected = kit_count_cases(o.ops ? sel : NULL);
    FILE *err = tmpfile();
    if (!err) {
        cli_error(CMD, "cannot create a temporary file for the worker's stderr: %s",
                  strerror(errno));
        report_free(&r);
        return CLI_EXIT_FAIL;
    }
    bool tty = isatty(STDERR_FILENO) == 1;
    /* A worker that dies while a request is on its way must not take the parent with it. */
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
    if (!o.no_abi)
        run_abi(&o, fileno(err), &r);
    if (!r.fatal)
        run_ops(&o, fileno(err), &r, tty);
    fclose(err);
    signal(SIGPIPE, old_pipe);
    bool ok = !r.fatal && r.fail == 0 && r.crash == 0 && r.timeout == 0 && r.error == 0 &&
              r.abi_fail == 0;
    bool json_stdout = o.json && strcmp(o.json, "-") == 0;
    if (!json_stdout)
        print_text(&o, &r);
    bool written = !o.json || write_json(&o, &r, ok);
    report_free(&r);
    return ok && written ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
