/*
 * runtime/program_replace.c — re-placement: when a device fails a program (compile error, out
 * of device memory, device lost), the program is built again without that device, and the
 * failure is said once, as a warning that names the device, the status, the backend's message
 * and where the work went (DESIGN.md, "The plugin ABI").
 *
 * Granularity: a failing device is excluded for the whole program, not only for the nodes whose
 * call failed. A failure says little about which other nodes the device would also fail (an
 * out-of-memory at one buffer depends on all the others; a lost device loses everything), and
 * splitting a program around one partition would add transfers on every run. Exclusion is per
 * program: another program (a smaller one, after the driver recovered) may still use the
 * device. The warning is logged once per device and context; later re-placements away from the
 * same device log at INFO.
 *
 * At create, the failing backend calls are compile, buffer allocation and weight upload. At
 * run, execute and the copies between devices: the program is rebuilt from its source graph
 * without the device, inputs and states are carried over from the old buffers (a state from the
 * device that held its newest contents; when that device cannot read it any more, the state is
 * lost and the run fails saying so: the caller resets its session and the next run works on the
 * new placement), and the failed run is run again once. Running again is safe for KV caches: a
 * partial run only wrote rows that the repeated run overwrites with the same values.
 *
 * When no device is left for some node, creation fails with the first failure's status and a
 * message listing every failure; a failed run keeps its old placement and returns its error.
 *
 * Thread-safety: as bst_program_run (one thread per program; the context's replace_warned flags
 * are written only under the caller's serialization of runs on a context's devices).
 */
#include "runtime/program_internal.h"
#include "runtime/tune.h"

#include "graph/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_CAP 512

/* Failures seen by one create or one run, per device. */
typedef struct failures {
    uint32_t nd;
    bool *failed;
    bst_status *status;
    char (*msg)[MSG_CAP];
    uint32_t first; /* device that failed first, BSTI_NONE */
} failures;

static bst_status failures_init(failures *f, uint32_t nd)
{
    memset(f, 0, sizeof *f);
    f->nd = nd;
    f->first = BSTI_NONE;
    size_t n = nd ? nd : 1;
    f->failed = calloc(n, sizeof *f->failed);
    f->status = calloc(n, sizeof *f->status);
    f->msg = calloc(n, sizeof *f->msg);
    if (!f->failed || !f->status || !f->msg)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "re-placement: out of memory");
    return BST_OK;
}

static void failures_free(failures *f)
{
    free(f->failed);
    free(f->status);
    free(f->msg);
}

static void failures_add(failures *f, uint32_t d, bst_status st, const char *msg)
{
    f->failed[d] = true;
    f->status[d] = st;
    snprintf(f->msg[d], MSG_CAP, "%s", msg);
    if (f->first == BSTI_NONE)
        f->first = d;
}

/* What a different device may do better: everything a backend reports about its own device. */
static bool replaceable_at_create(bst_status st)
{
    return st == BST_ERR_COMPILE || st == BST_ERR_DEVICE_OOM || st == BST_ERR_DEVICE_LOST ||
           st == BST_ERR_UNSUPPORTED || st == BST_ERR_BACKEND;
}

/* A failing run: only faults of the device itself (a compile-time verdict cannot show up here,
 * and INVALID_ARG from a backend is the executor's bug, not the device's). */
static bool replaceable_at_run(bst_status st)
{
    return st == BST_ERR_DEVICE_LOST || st == BST_ERR_DEVICE_OOM || st == BST_ERR_BACKEND;
}

/* Builds `graph` with `base` (may be NULL) and every device in f excluded, excluding each device
 * that fails in turn. On failure, the status and message say every failure recorded in f. */
static bst_status build_replacing(bst_context *ctx, const bst_graph *graph, const bool *base,
                                  failures *f, bst_program **out_program)
{
    uint32_t nd = ctx->n_devices;
    bool *ex = calloc(nd ? nd : 1, sizeof *ex);
    if (!ex)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "re-placement: out of memory");
    for (uint32_t d = 0; d < nd; d++)
        ex[d] = (base && base[d]) || f->failed[d];
    bst_status st;
    for (;;) {
        uint32_t fd = BSTI_NONE;
        st = bsti_tune_build(ctx, graph, ex, out_program, &fd); /* tune_plan.c */
        if (st == BST_OK || fd >= nd || ex[fd] || !replaceable_at_create(st))
            break;
        failures_add(f, fd, st, bst_last_error());
        ex[fd] = true;
        bsti_log(BST_LOG_DEBUG, "program: %s; placing again without that device",
                 f->msg[fd]);
    }
    free(ex);
    if (st == BST_OK || f->first == BSTI_NONE)
        return st;
    /* Say every failure; the status is the first device's, which is what went wrong (the last
     * one is usually "no device left"). */
    char last[MSG_CAP], all[2048];
    snprintf(last, sizeof last, "%s", bst_last_error());
    size_t len = 0;
    all[0] = '\0';
    for (uint32_t d = f->first, k = 0; k < nd && len < sizeof all; k++, d = (d + 1) % nd) {
        if (!f->failed[d])
            continue;
        int w = snprintf(all + len, sizeof all - len, "%s%s", len ? "; then " : "", f->msg[d]);
        len += w > 0 ? (size_t)w : 0;
    }
    bst_status result = st == BST_ERR_UNSUPPORTED ? f->status[f->first] : st;
    return bsti_fail(result, "%s; no other device could take the work: %s", all, last);
}

/* One warning per failed device and context; `what` is "compiling", "running", ... */
static void log_replaced(const bst_program *np, const failures *f, const char *what)
{
    bst_context *ctx = np->ctx;
    char where[512], label[200];
    size_t len = 0;
    where[0] = '\0';
    for (uint32_t d = 0; d < ctx->n_devices && len < sizeof where; d++) {
        if (!np->devs[d].used)
            continue;
        int w = snprintf(where + len, sizeof where - len, "%s%s", len ? ", " : "",
                         bsti_prog_device_label(ctx, d, label, sizeof label));
        len += w > 0 ? (size_t)w : 0;
    }
    for (uint32_t d = 0; d < f->nd; d++) {
        if (!f->failed[d])
            continue;
        bsti_device *dev = &ctx->devices[d];
        bst_log_level level = dev->replace_warned ? BST_LOG_INFO : BST_LOG_WARN;
        dev->replace_warned = true;
        bsti_log(level, "%s failed while %s a program (%s: %s); its work now runs on %s",
                 bsti_prog_device_label(ctx, d, label, sizeof label), what,
                 bst_status_name(f->status[d]), f->msg[d], where[0] ? where : "no device");
    }
}

bst_status bst_program_create(bst_context *context, const bst_graph *graph,
                              bst_program **out_program)
{
    if (out_program)
        *out_program = NULL;
    if (!context || !graph || !out_program)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_create: NULL argument");
    failures f;
    bst_status st = failures_init(&f, context->n_devices);
    if (st == BST_OK)
        st = build_replacing(context, graph, NULL, &f, out_program);
    if (st == BST_OK && f.first != BSTI_NONE)
        log_replaced(*out_program, &f, "compiling");
    failures_free(&f);
    return st;
}

/* --- carrying inputs and states into the rebuilt program --- */

static uint32_t find_source(const bst_graph *g, bst_op op, const char *name)
{
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == op && g->nodes[i].name && strcmp(g->nodes[i].name, name) == 0)
            return i;
    return BSTI_NONE;
}

/* Reads root `v` of the old program from device `d` into `dst`; false when it cannot. */
static bool read_old(bst_program *old, uint32_t v, uint32_t d, void *dst, uint64_t size)
{
    const bsti_value_loc *loc = d < old->ctx->n_devices ? bsti_memplan_find(&old->plan, v, d)
                                                        : NULL;
    if (!loc || loc->size != size)
        return false;
    const bsti_device *dev = &old->ctx->devices[d];
    bsti_prog_clear_error();
    bst_status st = dev->plugin->api.buffer_read(dev->handle, bsti_prog_loc_buffer(old, loc),
                                                 loc->offset, dst, size);
    if (st != BST_OK)
        bsti_log(BST_LOG_DEBUG, "re-placement: reading %%%u back from %s failed: %s", v,
                 dev->info.name, bst_last_error());
    return st == BST_OK;
}

static bst_status write_new(bst_program *np, uint32_t v, const void *src, uint64_t size)
{
    for (uint32_t d = 0; d < np->ctx->n_devices; d++) {
        const bsti_value_loc *loc = bsti_memplan_find(&np->plan, v, d);
        if (!loc)
            continue;
        if (loc->size != size)
            return bsti_fail(BST_ERR_INTERNAL, "re-placement: %%%u is %llu bytes, was %llu", v,
                             (unsigned long long)loc->size, (unsigned long long)size);
        const bsti_device *dev = &np->ctx->devices[d];
        bsti_prog_clear_error();
        bst_status st = dev->plugin->api.buffer_write(dev->handle, bsti_prog_loc_buffer(np, loc),
                                                      loc->offset, src, size);
        if (st != BST_OK)
            return bsti_prog_backend_error(np, d, st, "restoring \"%s\" after re-placement",
                                           np->g->nodes[v].name);
    }
    return BST_OK;
}

/* Copies every named input and state of `old` into `np`. Values that no device can read back
 * are listed in `lost` (they stay zero in np); the status is for failures of np itself. */
static bst_status carry_over(bst_program *old, bst_program *np, uint32_t failed,
                             const char *skip, char *lost, size_t cap)
{
    size_t len = 0;
    lost[0] = '\0';
    uint8_t *buf = NULL;
    bst_status st = BST_OK;
    for (uint32_t v = 0; v < old->g->n_nodes && st == BST_OK; v++) {
        const bsti_node *n = &old->g->nodes[v];
        if ((n->op != BST_OP_INPUT && n->op != BST_OP_STATE) || !n->name || old->root[v] != v)
            continue;
        if (skip && n->op == BST_OP_INPUT && strcmp(n->name, skip) == 0)
            continue;
        bool placed = false;
        for (uint32_t d = 0; d < old->ctx->n_devices && !placed; d++)
            placed = bsti_memplan_find(&old->plan, v, d) != NULL;
        if (!placed)
            continue; /* no memory anywhere: nothing to carry */
        uint32_t v2 = find_source(np->g, n->op, n->name);
        if (v2 == BSTI_NONE)
            continue; /* nothing in the new program reads it */
        uint64_t size;
        st = bsti_type_nbytes(&n->type, &size);
        if (st != BST_OK)
            break;
        if (size > SIZE_MAX) {
            st = bsti_fail(BST_ERR_OVERFLOW, "re-placement: \"%s\" is too large", n->name);
            break;
        }
        uint8_t *grown = realloc(buf, size ? (size_t)size : 1);
        if (!grown) {
            st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "re-placement: out of memory for \"%s\"",
                           n->name);
            break;
        }
        buf = grown;
        bool ok = false;
        if (n->op == BST_OP_STATE) {
            /* Only the holder has the newest contents; other copies may be a run behind. */
            ok = read_old(old, v, old->holder[v], buf, size);
        } else {
            /* An input is written to every device that reads it: any copy will do, the failed
             * device's last. */
            for (uint32_t d = 0; d < old->ctx->n_devices && !ok; d++)
                ok = d != failed && read_old(old, v, d, buf, size);
            if (!ok)
                ok = read_old(old, v, failed, buf, size);
        }
        if (!ok) {
            int w = snprintf(lost + len, len < cap ? cap - len : 0, "%s%s \"%s\"",
                             len ? ", " : "", n->op == BST_OP_STATE ? "state" : "input",
                             n->name);
            len += w > 0 ? (size_t)w : 0;
            if (len >= cap)
                len = cap - 1;
            continue;
        }
        st = write_new(np, v2, buf, size);
    }
    free(buf);
    return st;
}

static void swap_and_destroy_old(bst_program *p, bst_program *np)
{
    bst_program tmp = *p;
    *p = *np;
    *np = tmp;
    bst_program_destroy(np);
}

/* After backend status `st` (message `first`) from device d while `what` ("running", "writing
 * input ..."): rebuilds p without d, carries its inputs and states over (except the input called
 * `skip`, about to be written) and swaps the new program into p. Fails, leaving p as it was, when
 * no other device can take the work. When contents could not be read back, p is re-placed all the
 * same, its lost flags are set, and the status says what was lost. */
static bst_status replace_off(bst_program *p, uint32_t d, bst_status st, const char *what,
                              const char *skip)
{
    char first[MSG_CAP];
    snprintf(first, sizeof first, "%s", bst_last_error());
    failures f;
    bst_program *np = NULL;
    bst_status rst = failures_init(&f, p->ctx->n_devices);
    if (rst == BST_OK) {
        failures_add(&f, d, st, first);
        rst = build_replacing(p->ctx, p->source, p->excluded, &f, &np);
    }
    if (rst != BST_OK) {
        /* Nothing else can run it: keep the old placement (the device may recover) and report
         * the device's own failure first. */
        char why[MSG_CAP];
        snprintf(why, sizeof why, "%s", bst_last_error());
        failures_free(&f);
        if (rst == st && strncmp(why, first, strlen(first)) == 0)
            return bsti_fail(st, "%s", why);
        return bsti_fail(st, "%s; re-placing failed: %s", first, why);
    }
    char lost[MSG_CAP];
    rst = carry_over(p, np, d, skip, lost, sizeof lost);
    if (rst != BST_OK) {
        bst_program_destroy(np);
        failures_free(&f);
        return rst;
    }
    log_replaced(np, &f, what);
    failures_free(&f);
    swap_and_destroy_old(p, np);
    p->failed_device = BSTI_NONE;
    if (!lost[0])
        return BST_OK;
    char label[200];
    bool state = strstr(lost, "state \"") != NULL, input = strstr(lost, "input \"") != NULL;
    p->lost_contents = true;
    p->lost_state = state;
    return bsti_fail(st, "%s; the program was re-placed off %s, but its %s could not be read "
                     "back from the failed device and %s lost (%s%s%s); the next run works "
                     "on the new placement",
                     first, bsti_prog_device_label(p->ctx, d, label, sizeof label), lost,
                     strchr(lost, ',') ? "were" : "was",
                     state ? "state starts empty again: a session must reset" : "",
                     state && input ? "; " : "", input ? "set the inputs again" : "");
}

bst_status bst_program_run(bst_program *program, const bst_run_params *params)
{
    if (!program)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_run: NULL program");
    bst_program *p = program;
    p->failed_device = BSTI_NONE;
    p->lost_contents = p->lost_state = false;
    bst_status st = bsti_prog_run_once(p, params);
    uint32_t d = p->failed_device;
    if (st == BST_OK || !replaceable_at_run(st) || d >= p->ctx->n_devices)
        return st;
    st = replace_off(p, d, st, "running", NULL);
    return st == BST_OK ? bsti_prog_run_once(p, params) : st;
}

/* A lost device shows first where the caller writes an input: re-place there too, then write. */
bst_status bsti_prog_set_input_replacing(bst_program *p, uint32_t v, const char *name,
                                         const void *data, uint64_t size)
{
    p->failed_device = BSTI_NONE;
    bst_status st = bsti_prog_write_input(p, v, name, data, size);
    uint32_t d = p->failed_device;
    if (st == BST_OK || !replaceable_at_run(st) || d >= p->ctx->n_devices)
        return st;
    char what[160];
    snprintf(what, sizeof what, "writing input \"%s\" of", name);
    st = replace_off(p, d, st, what, name);
    if (st != BST_OK)
        return st;
    uint32_t v2 = find_source(p->g, BST_OP_INPUT, name);
    if (v2 == BSTI_NONE)
        return bsti_fail(BST_ERR_INTERNAL, "re-placement: input \"%s\" is gone", name);
    return bsti_prog_write_input(p, v2, name, data, size);
}

bool bsti_program_take_lost(bst_program *program, bool *out_state_lost)
{
    bool lost = program && program->lost_contents;
    if (out_state_lost)
        *out_state_lost = lost && program->lost_state;
    if (program)
        program->lost_contents = program->lost_state = false;
    return lost;
}
