/*
 * runtime/tune_explain.c — bst_program_explain: why each node of a program runs where it does,
 * from the record kernel selection keeps (tune.h), as text or JSON. Programs made with tuning
 * off explain themselves as "static" (static priority, nothing measured).
 */
#include "runtime/tune.h"

#include "graph/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) BST_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A JSON string literal (names come from plugins and drivers: anything may be in them). */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            sb_printf(b, "\\%c", *c);
        else if (*c < 0x20)
            sb_printf(b, "\\u%04x", *c);
        else
            sb_printf(b, "%c", *c);
    }
    sb_printf(b, "\"");
}

static const char *how_name(uint8_t how)
{
    switch (how) {
    case BSTI_TUNE_HOW_ONLY:
        return "only-candidate";
    case BSTI_TUNE_HOW_HIT:
        return "hit";
    case BSTI_TUNE_HOW_MEASURED:
        return "miss-measured";
    case BSTI_TUNE_HOW_FROZEN_MISS:
        return "frozen-miss-static";
    default:
        return "static";
    }
}

static const char *mode_name(uint32_t mode)
{
    static const char *const names[] = {"off", "cached", "full", "frozen"};
    return mode < 4 ? names[mode] : "?";
}

static void explain_node(const bst_program *p, uint32_t id, bool json, bool first, sbuf *b)
{
    const bsti_node *n = &p->g->nodes[id];
    const bsti_tune_node *rn = p->tune && id < p->tune->n_nodes ? &p->tune->nodes[id] : NULL;
    char type[160], label[200];
    bsti_type_format(&n->type, type, sizeof type);
    const char *op = bst_op_name(n->op) ? bst_op_name(n->op) : "?";
    bsti_prog_device_label(p->ctx, n->device, label, sizeof label);
    uint8_t how = rn ? rn->how : BSTI_TUNE_HOW_NONE;
    const bsti_tune_cand *chosen =
        rn && rn->n_cands && how != BSTI_TUNE_HOW_FROZEN_MISS && how != BSTI_TUNE_HOW_NONE
            ? &rn->cands[rn->chosen]
            : NULL;
    if (json) {
        sb_printf(b, "%s{\"id\":%u,\"op\":", first ? "" : ",", id);
        sb_json_str(b, op);
        sb_printf(b, ",\"type\":");
        sb_json_str(b, type);
        sb_printf(b, ",\"device\":");
        sb_json_str(b, label);
        sb_printf(b, ",\"kernel\":");
        sb_json_str(b, p->variant_names[id]);
        sb_printf(b, ",\"cache\":\"%s\",\"time_ns\":%llu,\"transfer_ns\":%llu,\"candidates\":[",
                  how_name(how), chosen ? (unsigned long long)chosen->kernel_ns : 0ull,
                  chosen ? (unsigned long long)chosen->transfer_ns : 0ull);
        for (uint32_t c = 0; rn && c < rn->n_cands; c++) {
            const bsti_tune_cand *cd = &rn->cands[c];
            sb_printf(b, "%s{\"device\":", c ? "," : "");
            sb_json_str(b, bsti_prog_device_label(p->ctx, cd->device, label, sizeof label));
            sb_printf(b, ",\"kernel\":");
            sb_json_str(b, cd->name);
            sb_printf(b, ",\"time_ns\":%llu,\"transfer_ns\":%llu,\"hit\":%s,\"chosen\":%s}",
                      (unsigned long long)cd->kernel_ns, (unsigned long long)cd->transfer_ns,
                      cd->hit ? "true" : "false", chosen == cd ? "true" : "false");
        }
        sb_printf(b, "]}");
        return;
    }
    sb_printf(b, "%%%u %s %s -> %s [%s]", id, op, type, label, p->variant_names[id]);
    if (chosen && how != BSTI_TUNE_HOW_ONLY)
        sb_printf(b, " %.1f us", (double)chosen->kernel_ns / 1e3);
    if (chosen && chosen->transfer_ns)
        sb_printf(b, " +%.1f us transfer", (double)chosen->transfer_ns / 1e3);
    sb_printf(b, " (%s)", how_name(how));
    bool any = false;
    for (uint32_t c = 0; rn && c < rn->n_cands; c++) {
        const bsti_tune_cand *cd = &rn->cands[c];
        if (cd == chosen)
            continue;
        sb_printf(b, "%s %s [%s] ", any ? "," : "; runners-up:",
                  bsti_prog_device_label(p->ctx, cd->device, label, sizeof label), cd->name);
        if (cd->kernel_ns)
            sb_printf(b, "%.1f us", (double)cd->kernel_ns / 1e3);
        else
            sb_printf(b, "unmeasured");
        if (cd->transfer_ns)
            sb_printf(b, " +%.1f us transfer", (double)cd->transfer_ns / 1e3);
        any = true;
    }
    sb_printf(b, "\n");
}

static const char *plan_source_name(uint8_t source)
{
    static const char *const names[] = {"none", "measured", "database", "unchecked"};
    return source < 4 ? names[source] : "?";
}

/* The whole-graph check (tune_plan.c): which plan was kept, on what evidence. */
static void explain_plan(const bsti_tune_report *r, bool json, sbuf *b)
{
    const bsti_plan_check *c = r ? &r->plan : NULL;
    if (!c || c->source == 0) {
        if (json)
            sb_printf(b, "\"plan\":null,");
        return;
    }
    if (json) {
        sb_printf(b, "\"plan\":{\"chosen\":\"%s\",\"source\":\"%s\",\"prompt_tokens\":%u,"
                  "\"decode_n_kv\":%u,\"check_seconds\":%.3f,\"weight_second_copies\":%u,"
                  "\"all_plans_hits\":%u,\"all_plans_measured\":%u,"
                  "\"all_plans_measure_seconds\":%.3f,\"candidates\":[",
                  bsti_plan_kind_name(c->chosen), plan_source_name(c->source), c->prompt_tokens,
                  c->decode_n_kv, (double)c->check_ns / 1e9, r->second_copies, c->all_hits,
                  c->all_measured, (double)c->all_measure_ns / 1e9);
        bool first = true;
        for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++) {
            if (!c->candidate[k])
                continue;
            sb_printf(b, "%s{\"plan\":\"%s\",\"decode_ns\":%llu,\"prompt_ns\":%llu,"
                      "\"same_as\":\"%s\",\"chosen\":%s}",
                      first ? "" : ",", bsti_plan_kind_name(k),
                      (unsigned long long)c->decode_ns[k], (unsigned long long)c->prompt_ns[k],
                      bsti_plan_kind_name(c->same_as[k]), k == c->chosen ? "true" : "false");
            first = false;
        }
        sb_printf(b, "],\"split\":");
        if (c->split_decode < BSTI_PLAN_COUNT)
            sb_printf(b, "{\"decode\":\"%s\",\"prompt\":\"%s\",\"role\":\"%s\"}",
                      bsti_plan_kind_name(c->split_decode), bsti_plan_kind_name(c->split_prompt),
                      c->role == 1 ? "decode" : c->role == 2 ? "prompt" : "single");
        else
            sb_printf(b, "null");
        sb_printf(b, "},");
        return;
    }
    sb_printf(b, "# whole-graph plan: %s (%s)", bsti_plan_kind_name(c->chosen),
              plan_source_name(c->source));
    if (c->source == 3) {
        sb_printf(b, ": no plan row, per-node rows used unchecked\n");
        return;
    }
    sb_printf(b, "; decode step (n_kv %u) / prompt chunk (%u tokens):", c->decode_n_kv,
              c->prompt_tokens);
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++) {
        if (!c->candidate[k])
            continue;
        sb_printf(b, " %s%s %.3f ms / %.3f ms", k == c->chosen ? "*" : "", bsti_plan_kind_name(k),
                  (double)c->decode_ns[k] / 1e6, (double)c->prompt_ns[k] / 1e6);
        if (c->same_as[k] != k)
            sb_printf(b, " (= %s)", bsti_plan_kind_name(c->same_as[k]));
        sb_printf(b, ";");
    }
    if (c->source == 1)
        sb_printf(b, " check took %.2f s (all candidate plans: %u nodes from the database, %u "
                  "measured, %.2f s measuring);", (double)c->check_ns / 1e9, c->all_hits,
                  c->all_measured, (double)c->all_measure_ns / 1e9);
    if (c->split_decode < BSTI_PLAN_COUNT)
        sb_printf(b, " split: %s for decode steps, %s for prompt chunks (this program: %s)",
                  bsti_plan_kind_name(c->split_decode), bsti_plan_kind_name(c->split_prompt),
                  c->role == 1 ? "decode" : c->role == 2 ? "prompt" : "single");
    sb_printf(b, "\n");
}

/* Appends one program's explanation to b. */
static void explain_into(const bst_program *p, bool json, sbuf *b)
{
    const bsti_tune_report *r = p->tune;
    uint32_t mode = p->ctx->tune_mode;
    if (json) {
        sb_printf(b, "{\"tune_mode\":\"%s\",\"hits\":%u,\"measured\":%u,\"frozen_misses\":%u,"
                  "\"measure_seconds\":%.3f,\"plan_check_seconds\":%.3f,"
                  "\"emulated_devices\":\"%s\",",
                  mode_name(mode), r ? r->hits : 0, r ? r->measured : 0,
                  r ? r->frozen_misses : 0, r ? (double)r->measure_ns / 1e9 : 0.0,
                  r && r->plan.source == 1 ? (double)r->plan.check_ns / 1e9 : 0.0,
                  mode == BST_TUNE_OFF ? "static" : bsti_tune_include_emulated() ? "measured"
                                                                                : "left out");
        explain_plan(r, true, b);
        sb_printf(b, "\"nodes\":[");
    } else {
        sb_printf(b, "# tune mode %s: %u nodes from the database, %u measured, %u frozen misses, "
                  "%.2f s measuring%s\n",
                  mode_name(mode), r ? r->hits : 0, r ? r->measured : 0,
                  r ? r->frozen_misses : 0, r ? (double)r->measure_ns / 1e9 : 0.0,
                  mode == BST_TUNE_OFF            ? ""
                  : bsti_tune_include_emulated() ? "; emulated devices measured"
                                                 : "; emulated devices (PoCL, lavapipe) left out "
                                                   "unless BASTION_TUNE_EMULATED=1");
        explain_plan(r, false, b);
    }
    bool first = true;
    for (uint32_t id = 0; id < p->g->n_nodes; id++) {
        const bsti_node *n = &p->g->nodes[id];
        const bsti_op_info *info = bsti_op_get(n->op);
        if (!info || info->is_source || info->is_alias || n->device == BSTI_NONE)
            continue;
        explain_node(p, id, json, first, b);
        first = false;
    }
    if (json)
        sb_printf(b, "]}");
}

static bst_status finish(sbuf *b, char **out_text, const char *who)
{
    if (!b->s && !b->failed)
        sb_printf(b, "%s", "");
    if (b->failed) {
        free(b->s);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "%s: out of memory", who);
    }
    *out_text = b->s;
    return BST_OK;
}

bst_status bst_program_explain(const bst_program *program, bool json, char **out_text)
{
    if (out_text)
        *out_text = NULL;
    if (!program || !out_text)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_explain: NULL argument");
    sbuf b = {0};
    explain_into(program, json, &b);
    return finish(&b, out_text, "bst_program_explain");
}

bst_status bsti_tune_explain_programs(const bst_program *const *programs, const char *const *names,
                                      uint32_t n, bool json, char **out_text)
{
    sbuf b = {0};
    if (json)
        sb_printf(&b, "{\"programs\":[");
    for (uint32_t i = 0; i < n; i++) {
        if (!programs[i])
            continue;
        if (json) {
            sb_printf(&b, "%s{\"name\":", i ? "," : "");
            sb_json_str(&b, names[i]);
            sb_printf(&b, ",\"explain\":");
        } else {
            sb_printf(&b, "## program %s\n", names[i]);
        }
        explain_into(programs[i], json, &b);
        if (json)
            sb_printf(&b, "}");
    }
    if (json)
        sb_printf(&b, "]}\n");
    return finish(&b, out_text, "bst_session_explain");
}
