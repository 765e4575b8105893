/*
 * tests/test_cli_model.c — `bastion run` and `bastion perplexity` as a user meets them, on the
 * real default model ($BASTION_MODEL) through the built binary ($BASTION_BIN): the streamed
 * answer and the timing line, the --json object, seeded runs repeating, usage errors (exit 2)
 * and failures (exit 1), the -c / -b count errors that run, perplexity, explain and tune share;
 * perplexity checked against a computation written here on the library
 * API, saved logits compared with themselves (KL 0, full top-1 agreement) and with an f16 KV
 * cache (small KL), and baselines that do not match refused with the reason.
 */
#include "test_util.h"

#include <bastion/bastion.h>

#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <regex.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct result {
    int status; /* exit code, -1 when it did not exit normally */
    char *out, *err;
} result;

static char out_path[128], err_path[128], text_path[128], base_path[128], f16_path[128];

static void paths_init(void)
{
    int pid = (int)getpid();
    snprintf(out_path, sizeof out_path, "/tmp/bastion_clim_%d.out", pid);
    snprintf(err_path, sizeof err_path, "/tmp/bastion_clim_%d.err", pid);
    snprintf(text_path, sizeof text_path, "/tmp/bastion_clim_%d.txt", pid);
    snprintf(base_path, sizeof base_path, "/tmp/bastion_clim_%d.logits", pid);
    snprintf(f16_path, sizeof f16_path, "/tmp/bastion_clim_%d_f16.logits", pid);
}

static char *slurp(const char *path)
{
    size_t n = 0;
    char *s = bst_test_read_file(path, &n);
    return s ? s : strdup("");
}

/* Runs $BASTION_BIN args... (NULL-terminated) with stdout and stderr going to files. */
static result run(const char *first, ...)
{
    result r;
    const char *args[40];
    size_t n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n + 1 < sizeof args / sizeof args[0];
         a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    r.status = bst_test_wait_exit(bst_test_spawn_bastion(NULL, args, &fa));
    posix_spawn_file_actions_destroy(&fa);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    if (r.status != 0)
        fprintf(stderr, "\n  [exit %d] %s", r.status, r.err);
    return r;
}

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
}

static const char *model_path(void)
{
    const char *p = getenv("BASTION_MODEL");
    CU_ASSERT_FATAL(p != NULL && *p);
    return p;
}

static bool matches(const char *text, const char *pattern)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* --- run --- */

static void test_run_streams_answer(void)
{
    result r = run("run", "-m", model_path(), "-p", "The capital of France is", "--temp", "0",
                   "-n", "8", "-t", "2", "-c", "256", NULL);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "Paris"));
    CU_ASSERT(matches(r.err, "^load [0-9]+ ms, prompt [0-9.]+ tok/s \\(5 tokens\\), generation "
                             "[0-9.]+ tok/s \\(8 tokens\\), stop: max-tokens\n$"));
    result_free(&r);
}

static void test_run_json_chat(void)
{
    /* The README's main job, as is (greedy by default), plus --json. */
    result r = run("run", "-m", model_path(), "--chat", "-p", "What is the capital of France?",
                   "-c", "256", "--json", NULL);
    CU_ASSERT_EQUAL_FATAL(r.status, 0);
    json_object *root = json_tokener_parse(r.out);
    CU_ASSERT_FATAL(root != NULL);
    json_object *v;
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "schema", &v));
    CU_ASSERT_STRING_EQUAL(json_object_get_string(v), "bastion.run/1");
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "text", &v));
    CU_ASSERT_PTR_NOT_NULL(strstr(json_object_get_string(v), "Paris"));
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "stop_reason", &v));
    CU_ASSERT_STRING_EQUAL(json_object_get_string(v), "eog");
    json_object *tokens, *n_gen, *timings, *rss;
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "tokens", &tokens));
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "n_generated", &n_gen));
    CU_ASSERT_EQUAL(json_object_array_length(tokens), (size_t)json_object_get_int(n_gen));
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "timings", &timings));
    CU_ASSERT_FATAL(json_object_object_get_ex(timings, "generation_tokens_per_s", &v));
    CU_ASSERT(json_object_get_double(v) > 0.0);
    CU_ASSERT_FATAL(json_object_object_get_ex(timings, "load_ms", &v));
    CU_ASSERT(json_object_get_double(v) > 0.0);
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "peak_rss_bytes", &rss));
    CU_ASSERT(json_object_get_uint64(rss) > 50u * 1024 * 1024);
    CU_ASSERT_EQUAL(r.err[0], '\0'); /* --json: nothing else */
    json_object_put(root);
    result_free(&r);
}

static void test_run_seed_repeats(void)
{
    result a = run("run", "-m", model_path(), "-p", "Once upon a time", "--seed", "42", "-n",
                   "6", "--temp", "1.0", "-c", "64", NULL);
    result b = run("run", "-m", model_path(), "-p", "Once upon a time", "--seed", "42", "-n",
                   "6", "--temp", "1.0", "-c", "64", NULL);
    CU_ASSERT_EQUAL(a.status, 0);
    CU_ASSERT_EQUAL(b.status, 0);
    CU_ASSERT(strlen(a.out) > 0);
    CU_ASSERT_STRING_EQUAL(a.out, b.out);
    result_free(&a);
    result_free(&b);
}

static void expect_exit(result r, int code, const char *needle)
{
    CU_ASSERT_EQUAL(r.status, code);
    if (!strstr(r.err, needle))
        fprintf(stderr, "\n  expected '%s' in: %s", needle, r.err);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, needle));
    result_free(&r);
}

static void test_run_errors(void)
{
    const char *m = model_path();
    expect_exit(run("run", "-p", "hi", NULL), 2, "a model is required");
    expect_exit(run("run", "-m", m, NULL), 2, "a prompt is required");
    expect_exit(run("run", "-m", m, "-p", "hi", "--temp", "warm", NULL), 2, "--temp");
    expect_exit(run("run", "-m", m, "-p", "hi", "--kv-type", "f8", NULL), 2, "--kv-type");
    expect_exit(run("run", "-m", m, "-p", "hi", "--system", "x", NULL), 2, "--chat");
    expect_exit(run("run", "-m", m, "-p", "hi", "--frobnicate", NULL), 2, "--frobnicate");
    expect_exit(run("run", "-m", "/nonexistent.gguf", "-p", "hi", NULL), 1,
                "/nonexistent.gguf");
    expect_exit(run("run", "-m", m, "-p", "hi", "--chat", "--chat-template", "nope", NULL), 1,
                "nope");
    /* A prompt longer than the context: the library's overflow, reported. */
    expect_exit(run("run", "-m", m, "-p", "one two three four five six seven eight nine ten",
                    "-c", "4", NULL),
                1, "context full");
}

/* -c / -b are parsed by one helper for run, perplexity, explain and tune (cli_size_option):
 * each command refuses a bad count with its own message, before it opens any model. */
static void test_size_option_errors(void)
{
    const char *m = model_path();
    expect_exit(run("run", "-m", m, "-p", "hi", "-c", "0", NULL), 2,
                "--ctx-size needs a positive count, not '0'");
    expect_exit(run("run", "-m", m, "-p", "hi", "--batch-size", "many", NULL), 2,
                "--batch-size needs a positive count, not 'many'");
    expect_exit(run("perplexity", "-m", m, "-f", "x.txt", "--ctx", "3", NULL), 2,
                "--ctx needs a count of at least 4, not '3'");
    expect_exit(run("perplexity", "-m", m, "-f", "x.txt", "--ctx-size", "-4", NULL), 2,
                "--ctx needs a count of at least 4, not '-4'");
    expect_exit(run("perplexity", "-m", m, "-f", "x.txt", "-b", "0", NULL), 2,
                "--batch-size needs a positive count, not '0'");
    expect_exit(run("explain", "-m", m, "-b", "0", NULL), 2,
                "--batch-size needs a positive count, not '0'");
    expect_exit(run("explain", "-m", m, "--ctx-size", "4294967296", NULL), 2,
                "--ctx-size needs a positive count, not '4294967296'");
    expect_exit(run("tune", "-m", m, "-c", "ten", NULL), 2,
                "--ctx-size needs a positive count, not 'ten'");
    expect_exit(run("tune", "-m", m, "-b", "", NULL), 2,
                "--batch-size needs a positive count, not ''");
}

/* --- perplexity --- */

static const char *const TEXT =
    "The river runs through the old town, past the mill and the church, and under the stone "
    "bridge that the villagers built three hundred years ago. In spring the water rises and "
    "the meadows flood; in summer children swim near the weir while their parents sit in the "
    "shade of the willows. Travellers who cross the bridge often stop at the inn on the far "
    "bank, where the landlord serves bread, cheese and a dark beer brewed in the cellar. The "
    "town has a market every Saturday. Farmers bring vegetables, eggs and honey, and a man "
    "from the next valley sells knives that he sharpens while you wait. In the evening the "
    "square empties, the bells ring for vespers, and the swallows circle the tower until it "
    "is too dark to see them.";

static void write_text(void)
{
    FILE *f = fopen(text_path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fputs(TEXT, f);
    CU_ASSERT_FATAL(fclose(f) == 0);
}

/* With an f32 KV cache: the numbers are compared with f32 arithmetic through the library. */
static json_object *ppl_json(const char *ctx, const char *extra1, const char *extra2,
                             const char *extra3)
{
    result r = run("perplexity", "-m", model_path(), "-f", text_path, "--ctx", ctx, "--chunks",
                   "2", "--json", "--kv-type", "f32", extra1, extra2, extra3, NULL);
    CU_ASSERT_EQUAL(r.status, 0);
    json_object *root = json_tokener_parse(r.out);
    CU_ASSERT_PTR_NOT_NULL(root);
    result_free(&r);
    return root;
}

static double get_num(json_object *root, const char *key)
{
    json_object *v;
    if (!root || !json_object_object_get_ex(root, key, &v))
        return NAN;
    return json_object_get_double(v);
}

/* Perplexity over the same windows through the library: the CLI's windowing and scoring must
 * give the same number. */
static double api_perplexity(uint32_t n_ctx, uint32_t max_chunks)
{
    bst_context_options co = {.struct_size = sizeof co, .n_threads = 2, .backends = "cpu"};
    bst_context *ctx = NULL;
    bst_model *m = NULL;
    CU_ASSERT_FATAL(bst_context_create(&co, &ctx) == BST_OK);
    CU_ASSERT_FATAL(bst_model_load(ctx, model_path(), NULL, &m) == BST_OK);
    int32_t tok[1024];
    uint32_t n = 0;
    CU_ASSERT_FATAL(bst_tokenize(m, TEXT, strlen(TEXT), false, tok, 1024, &n) == BST_OK);
    bst_model_info info = {.struct_size = sizeof info};
    CU_ASSERT_FATAL(bst_model_get_info(m, &info) == BST_OK);
    bst_session_options so = {.struct_size = sizeof so, .n_ctx = n_ctx};
    bst_session *s = NULL;
    CU_ASSERT_FATAL(bst_session_create(m, &so, &s) == BST_OK);
    float *logits = malloc((size_t)n_ctx * info.n_vocab * sizeof *logits);
    double nll = 0.0;
    uint32_t count = 0, chunks = n / n_ctx < max_chunks ? n / n_ctx : max_chunks;
    for (uint32_t c = 0; c < chunks; c++) {
        bst_session_reset(s);
        CU_ASSERT_FATAL(bst_session_eval(s, tok + c * n_ctx, n_ctx, true, logits) == BST_OK);
        for (uint32_t j = n_ctx / 2; j + 1 < n_ctx; j++) {
            const float *row = logits + (size_t)j * info.n_vocab;
            double mx = row[0], sum = 0.0;
            for (uint32_t i = 1; i < info.n_vocab; i++)
                mx = row[i] > mx ? row[i] : mx;
            for (uint32_t i = 0; i < info.n_vocab; i++)
                sum += exp((double)row[i] - mx);
            nll += -((double)row[tok[c * n_ctx + j + 1]] - mx - log(sum));
            count++;
        }
    }
    free(logits);
    bst_session_destroy(s);
    bst_model_destroy(m);
    bst_context_destroy(ctx);
    return exp(nll / count);
}

static void test_perplexity_and_kl(void)
{
    write_text();
    json_object *base = ppl_json("32", "--save-logits", base_path, NULL);
    double ppl = get_num(base, "ppl");
    double want = api_perplexity(32, 2);
    fprintf(stderr, "\n  ppl %.4f (library: %.4f)\n", ppl, want);
    CU_ASSERT(isfinite(ppl) && ppl > 1.0);
    CU_ASSERT(fabs(ppl - want) <= 1e-3 * want);
    CU_ASSERT_DOUBLE_EQUAL(get_num(base, "n_scored"), 2 * 15, 0.0);
    CU_ASSERT(fabs(exp(get_num(base, "mean_nll")) - ppl) <= 1e-9 * ppl);

    /* Against itself: no divergence, every top-1 the same. */
    json_object *same = ppl_json("32", "--kl-base", base_path, NULL);
    CU_ASSERT(get_num(same, "mean_kl") <= 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(get_num(same, "top1_agreement"), 1.0, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(get_num(same, "ppl"), ppl, 1e-9 * ppl);

    /* The default KV cache, f16: close, not identical. */
    result r = run("perplexity", "-m", model_path(), "-f", text_path, "--ctx", "32", "--chunks",
                   "2", "--json", "--kl-base", base_path, NULL);
    CU_ASSERT_EQUAL(r.status, 0);
    json_object *h = json_tokener_parse(r.out);
    double kl = get_num(h, "mean_kl");
    fprintf(stderr, "  f16 KV: mean KL %g, top-1 %.3f\n", kl, get_num(h, "top1_agreement"));
    CU_ASSERT(kl > 0.0 && kl < 5e-3);
    CU_ASSERT(get_num(h, "top1_agreement") >= 0.9);
    json_object_put(h);
    result_free(&r);

    json_object_put(base);
    json_object_put(same);
}

static void test_perplexity_bad_baseline(void)
{
    write_text();
    const char *m = model_path();
    result r = run("perplexity", "-m", m, "-f", text_path, "--ctx", "32", "--chunks", "1",
                   "--save-logits", base_path, NULL);
    CU_ASSERT_EQUAL_FATAL(r.status, 0);
    CU_ASSERT(matches(r.out, "^PPL = [0-9.]+ \\+/- [0-9.]+ "));
    result_free(&r);
    expect_exit(run("perplexity", "-m", m, "-f", text_path, "--ctx", "16", "--chunks", "1",
                    "--kl-base", base_path, NULL),
                1, "window");
    expect_exit(run("perplexity", "-m", m, "-f", text_path, "--ctx", "32", "--chunks", "2",
                    "--kl-base", base_path, NULL),
                1, "windows");
    /* Truncated. */
    size_t size = 0;
    char *data = bst_test_read_file(base_path, &size);
    CU_ASSERT_FATAL(data && size > 1000);
    FILE *f = fopen(f16_path, "wb");
    CU_ASSERT_FATAL(f && fwrite(data, 1, size - 100, f) == size - 100 && fclose(f) == 0);
    expect_exit(run("perplexity", "-m", m, "-f", text_path, "--ctx", "32", "--chunks", "1",
                    "--kl-base", f16_path, NULL),
                1, "size");
    /* Not a logits file. */
    f = fopen(f16_path, "wb");
    CU_ASSERT_FATAL(f && fwrite("NOTLOGIT", 1, 8, f) == 8 && fwrite(data + 8, 1, size - 8, f) ==
                                                                 size - 8 && fclose(f) == 0);
    expect_exit(run("perplexity", "-m", m, "-f", text_path, "--ctx", "32", "--chunks", "1",
                    "--kl-base", f16_path, NULL),
                1, "magic");
    free(data);
    FILE *t = fopen(text_path, "wb");
    CU_ASSERT_FATAL(t != NULL);
    /* Another text of the same length in windows: only the token hash tells. */
    fputs("Completely different words make up this text, so that its tokens differ from the "
          "ones the baseline was saved for, while the window and the count stay the same size "
          "as before because it is long enough to fill a whole window of sixty-four tokens. "
          "Mountains, glaciers and quiet lakes lie to the north; deserts, salt flats and dry "
          "canyons stretch away to the south, where the roads are long and the towns small.",
          t);
    CU_ASSERT_FATAL(fclose(t) == 0);
    expect_exit(run("perplexity", "-m", m, "-f", text_path, "--ctx", "32", "--chunks", "1",
                    "--kl-base", base_path, NULL),
                1, "tokens differ");
    expect_exit(run("perplexity", "-m", m, "-f", text_path, "--ctx", "4096", NULL), 1,
                "at least one window");
    expect_exit(run("perplexity", "-m", m, NULL), 2, "a text file is required");
}

int main(void)
{
    /* The CLI runs the CPU backend's reference kernels: the answers asserted here are the
     * model's under exact f32 arithmetic (see test_session.c) but for the KV cache, f16 unless
     * --kv-type f32 (perplexity's comparisons with the library ask for f32). */
    setenv("BASTION_CPU_KERNELS", "ref", 1);
    paths_init();
    static const bst_test_case cases[] = {
        {"run streams the answer and a timing line", test_run_streams_answer},
        {"run --json --chat", test_run_json_chat},
        {"run with a seed repeats", test_run_seed_repeats},
        {"run errors", test_run_errors},
        {"-c / -b errors of run, perplexity, explain, tune", test_size_option_errors},
        {"perplexity, saved logits and KL", test_perplexity_and_kl},
        {"perplexity refuses a mismatched baseline", test_perplexity_bad_baseline},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("cli_model", cases);
    remove(out_path);
    remove(err_path);
    remove(text_path);
    remove(base_path);
    remove(f16_path);
    return rc;
}
