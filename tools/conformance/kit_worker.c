/*
 * tools/conformance/kit_worker.c — the op-case worker of `bastion conformance` and the record
 * format it shares with the parent (see kit.h).
 *
 * The worker loads the plugin under test through the ordinary loader (so it meets the plugin
 * exactly as `bastion run` does), plus the CPU backend held to its reference kernels
 * (BASTION_CPU_KERNELS=ref) when the plugin under test is not the CPU backend itself. Both go
 * into the shared harness, which runs the CPU device first and compares every other device
 * with it and with the double-precision oracle.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#define BST_EXPERIMENTAL_DEVICE_API

#include "kit.h"

#include "backend_ops_harness.h"

#include <bastion/bastion.h>
#include <bastion/graph.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* --- records ------------------------------------------------------------------------------- */

static void put_field(FILE *out, const char *s)
{
    for (; s && *s; s++)
        fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, out);
}

void kit_send(FILE *out, const char *tag, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    fputs(tag, out);
    for (int i = 0; i < n; i++) {
        fputc('\t', out);
        put_field(out, va_arg(ap, const char *));
    }
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}

int kit_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    size_t len = strlen(line);
    if (len && line[len - 1] == '\n')
        line[len - 1] = '\0';
    while (n < max) {
        fields[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab)
            break;
        *tab = '\0';
        p = tab + 1;
    }
    return n;
}

bool kit_parse_ops(const char *list, bool *op_selected, char *why, size_t n)
{
    memset(op_selected, 0, BST_OP_COUNT * sizeof *op_selected);
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        bool found = false;
        for (int op = 0; op < BST_OP_COUNT; op++) {
            const char *name = bst_op_name((bst_op)op);
            if (name && strlen(name) == len && strncmp(name, p, len) == 0) {
                op_selected[op] = true;
                found = true;
            }
        }
        if (!found) {
            snprintf(why, n, "unknown op '%.*s'", (int)len, p);
            return false;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return true;
}

/* --- case selection ------------------------------------------------------------------------ */

typedef struct worker {
    const kit_worker_args *a;
    bool counting; /* kit_count_cases: select nothing, count what the filter takes */
    uint64_t count;
    bool pending; /* a START was sent without its DONE */
    uint64_t pending_no;
    bool need_request; /* the next selected case waits for the parent's RUN */
    bool stop;         /* STOP or end of the requests: skip everything */
    uint64_t wanted;   /* run the first selected case numbered >= wanted */
    bool report[256]; /* per harness device: belongs to the plugin under test */
} worker;

static worker g_w;

static void num(char *buf, size_t n, uint64_t v)
{
    snprintf(buf, n, "%llu", (unsigned long long)v);
}

static void finish_pending(void)
{
    if (!g_w.pending)
        return;
    char no[32];
    num(no, sizeof no, g_w.pending_no);
    kit_send(g_w.a->out, "DONE", 1, no);
    g_w.pending = false;
}

/* Reads the parent's next request (after the DONE of the previous case). */
static void read_request(void)
{
    char line[64];
    unsigned long long n = 0;
    if (!fgets(line, sizeof line, g_w.a->in) || sscanf(line, "RUN %llu", &n) != 1) {
        g_w.stop = true; /* STOP, end of file or anything else */
        return;
    }
    g_w.wanted = n;
}

static bool on_select(void *ud, uint64_t case_no, const bo_case *c)
{
    (void)ud;
    const bool *sel = g_w.a ? g_w.a->op_selected : NULL;
    if (sel && ((int)c->op >= BST_OP_COUNT || !sel[c->op]))
        return false;
    if (g_w.counting) {
        g_w.count++;
        return false;
    }
    if (g_w.stop)
        return false;
    if (g_w.need_request) {
        finish_pending();
        read_request();
        g_w.need_request = false;
        if (g_w.stop)
            return false;
    }
    if (case_no < g_w.wanted)
        return false;
    g_w.need_request = true;
    char no[32];
    num(no, sizeof no, case_no);
    const char *op = bst_op_name(c->op);
    kit_send(g_w.a->out, "START", 4, no, op ? op : "?", c->dtype_label, c->what);
    g_w.pending = true;
    g_w.pending_no = case_no;
    return true;
}

static const char *outcome_name(bo_outcome o)
{
    switch (o) {
    case BO_PASS: return "pass";
    case BO_FAIL: return "fail";
    case BO_UNSUPPORTED: return "unsupported";
    case BO_ERROR: return "error";
    }
    return "error";
}

static void on_result(void *ud, const bo_result *r)
{
    (void)ud;
    if (r->dev >= sizeof g_w.report || !g_w.report[r->dev])
        return;
    char no[32], ns[32], nr[32], no_[32];
    num(no, sizeof no, r->case_no);
    num(ns, sizeof ns, r->exec_ns);
    snprintf(nr, sizeof nr, "%.6g", r->nmse_ref);
    snprintf(no_, sizeof no_, "%.6g", r->nmse_oracle);
    kit_send(g_w.a->out, "RESULT", 8, no, bo_device_label(r->dev), r->variant,
             outcome_name(r->outcome), nr, no_, ns, r->why ? r->why : "");
}

uint64_t kit_count_cases(const bool *op_selected)
{
    static kit_worker_args args;
    args.op_selected = op_selected;
    memset(&g_w, 0, sizeof g_w);
    g_w.a = &args;
    g_w.counting = true;
    bo_hooks h = {on_select, NULL, NULL, true};
    bo_set_hooks(&h);
    size_t nf = 0;
    const bo_family *f = bo_families(&nf);
    for (size_t i = 0; i < nf; i++)
        (void)bo_family_run(f[i].name);
    bo_set_hooks(NULL);
    return g_w.count;
}

/* --- devices ------------------------------------------------------------------------------- */

static bst_context *g_ctx;

static const char *state_name(uint32_t s)
{
    const char *n = bst_plugin_state_name((bst_plugin_state)s);
    return n ? n : "?";
}

/* Sends the PLUGIN record of the plugin under test; false (with FATAL sent) when the loader
 * found no plugin of that name. */
static bool send_plugin(bst_context *ctx, const char *name, bool *out_loaded)
{
    for (uint32_t i = 0; i < bst_context_plugin_count(ctx); i++) {
        bst_plugin_record r;
        memset(&r, 0, sizeof r);
        r.struct_size = sizeof r;
        if (bst_context_plugin(ctx, i, &r) != BST_OK || strcmp(r.name, name) != 0)
            continue;
        if (r.state == BST_PLUGIN_DUPLICATE || r.state == BST_PLUGIN_NOT_SELECTED)
            continue;
        char abi[16];
        snprintf(abi, sizeof abi, "%u", r.abi_version);
        kit_send(g_w.a->out, "PLUGIN", 6, r.name, r.path, r.version, abi, state_name(r.state),
                 r.detail);
        *out_loaded = r.state == BST_PLUGIN_LOADED;
        return true;
    }
    kit_send(g_w.a->out, "FATAL", 1, "no plugin of that name was found in the plugin path");
    return false;
}

bool kit_open_context(const kit_worker_args *a, bool with_cpu, bst_context **out_ctx)
{
    char list[256];
    snprintf(list, sizeof list, "%s%s", a->backend, with_cpu ? ",cpu" : "");
    bst_context_options opt;
    memset(&opt, 0, sizeof opt);
    opt.struct_size = sizeof opt;
    opt.n_threads = 0;
    opt.backends = list;
    opt.plugin_paths = a->plugin_dir;
    opt.no_cache = true;
    bst_status s = bst_context_create(&opt, out_ctx);
    if (s != BST_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot create a context: %s: %s", bst_status_name(s),
                 bst_last_error());
        kit_send(a->out, "FATAL", 1, msg);
        return false;
    }
    return true;
}

static void worker_devices_init(void)
{
    for (uint32_t i = 0; i < bst_context_device_count(g_ctx); i++) {
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        const char *backend = "?";
        if (bst_context_device(g_ctx, i, &info, &backend) != BST_OK)
            continue;
        bool is_cpu = strcmp(backend, "cpu") == 0;
        bool under_test = strcmp(backend, g_w.a->backend) == 0;
        if (!under_test && !is_cpu)
            continue;
        const bst_backend_api *api = NULL;
        void *h = NULL;
        char label[64];
        snprintf(label, sizeof label, "%s:%u", backend, i);
        if (bst_context_device_backend(g_ctx, i, &api, &h) != BST_OK) {
            if (under_test) {
                char msg[1024];
                snprintf(msg, sizeof msg, "device %s (%s) failed to open: %s", label, info.name,
                         bst_last_error());
                kit_send(g_w.a->out, "FATAL", 1, msg);
            }
            continue;
        }
        uint32_t d = bo_device_add(api, h, label, is_cpu);
        if (d < sizeof g_w.report)
            g_w.report[d] = under_test;
        if (under_test)
            kit_send(g_w.a->out, "DEVICE", 2, label, info.name);
    }
}

int kit_ops_worker(const kit_worker_args *a)
{
    memset(&g_w, 0, sizeof g_w);
    g_w.a = a;
    g_w.need_request = true;
    bool is_cpu = strcmp(a->backend, "cpu") == 0;
    /* The reference the others are compared with: the CPU backend's reference kernels. When the
     * CPU backend itself is under test, all its kernels run (each against the oracle). */
    if (!is_cpu)
        setenv("BASTION_CPU_KERNELS", "ref", 1);
    /* The GPU-style backends offer fused attention on CPU-type devices only on request, as
     * test_backend_ops asks for it. */
    setenv("BASTION_OPENCL_FUSED", "1", 0);
    setenv("BASTION_VULKAN_FUSED", "1", 0);
    if (!kit_open_context(a, !is_cpu, &g_ctx))
        return 1;
    bool loaded = false;
    if (!send_plugin(g_ctx, a->backend, &loaded) || !loaded) {
        kit_send(a->out, "END", 0); /* the PLUGIN record says why */
        bst_context_destroy(g_ctx);
        return 1;
    }
    bo_set_device_source(worker_devices_init, NULL);
    bool any = false;
    for (uint32_t d = 0; d < bo_device_count() && d < sizeof g_w.report; d++)
        any = any || g_w.report[d];
    if (!any) {
        /* Nothing to test: passing vacuously would hide a plugin that finds no device. */
        kit_send(a->out, "FATAL", 1, "the plugin has no device that started on this machine");
        kit_send(a->out, "END", 0);
        bo_shutdown();
        bst_context_destroy(g_ctx);
        return 1;
    }
    bo_hooks h = {on_select, on_result, NULL, true};
    bo_set_hooks(&h);
    /* Test hook (tests/test_conformance.c): the nth allocation of the harness fails, so a test
     * sees a harness failure reported as its case's error. */
    const char *fail_alloc = getenv("BASTION_CONFORMANCE_FAIL_ALLOC");
    if (fail_alloc && *fail_alloc) {
        char *end = NULL;
        unsigned long long nth = strtoull(fail_alloc, &end, 10);
        if (*end == '\0')
            bo_fail_alloc(nth);
    }
    size_t nf = 0;
    const bo_family *f = bo_families(&nf);
    for (size_t i = 0; i < nf; i++)
        (void)bo_family_run(f[i].name);
    finish_pending();
    kit_send(a->out, "END", 0);
    bo_set_hooks(NULL);
    bo_shutdown();
    bst_context_destroy(g_ctx);
    return 0;
}
