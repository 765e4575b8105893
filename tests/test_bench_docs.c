/*
 * tests/test_bench_docs.c — `bastion bench report` and `bench compare` on hand-written documents
 * (tests/fixtures/bench): Markdown, CSV and SVG reports, comparisons of ops and model rows, depth
 * in rows and labels, and the commands' own entry points.
 */
#include "bench.h"
#include "bench_schema_check.h"
#include "bench_test_util.h"
#include "runtime/model/gguf.h"
#include "test_util.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- reports and comparisons on hand-written documents ------------------------------------- */

static char *report_text(const char *fixture, bench_format f)
{
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    if (bench_doc_load(bst_test_fixture(fixture), &d, &e) != BST_OK) {
        fprintf(stderr, "load %s: %s\n", fixture, e.msg);
        return NULL;
    }
    char *buf = doc_text(&d, f, NULL, 0.0, NULL);
    bench_doc_free(&d);
    return buf;
}

static void test_report_csv(void)
{
    char *csv = report_text("bench/a.json", BENCH_FORMAT_CSV);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csv);
    const char *header =
        "op,dtype,shape,label,backend,device,device_name,variant,status,reason,n,median_ns,"
        "min_ns,max_ns,mean_ns,stddev_ns,gflops,gbs,bandwidth_fraction,sgemm_ratio,compile_ns,"
        "prepare_ns,first_ns,cache_cold,weight_copies,flops,bytes,time_source,device_median_ns,"
        "device_min_ns,device_max_ns,read_fraction\n";
    CU_ASSERT_EQUAL(strncmp(csv, header, strlen(header)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\nmatmul,q4_1,1536x1x576,smollm2 ffn_gate/up decode,cpu,0,"
                                       "Test CPU,ref,ok,,3,100000,99000,101000,100000,1000,"
                                       "17.6947,5.61408,0.280704,,12000,3000,150000,1,240,"
                                       "1.76947e+06,561408,wall,,,,0.2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\nmatmul,f32,576x1x576,quick f32 gemv,cpu,0,Test CPU,"
                                       "tile&pack,ok,,3,40000,40000,40000,40000,0,16.5888,"
                                       "33.2928,1.66464,1.25,"));
    /* A skipped case: no numbers but its counts. */
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\nmatmul,f32,4096x512x14336,std gemm,cpu,0,Test CPU,ref,"
                                       "skipped,estimated 3.5 s per call (from a 16x512x14336 "
                                       "probe) is over the 1 s budget,,,,,,,,,,,,,,1,1,"
                                       "6.01295e+10,2.7263e+08,wall,,,,\n"));
    size_t lines = 0;
    for (const char *p = csv; *p; p++)
        lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, 6); /* header + five results */
    free(csv);
}

static void test_report_md(void)
{
    char *md = report_text("bench/a.json", BENCH_FORMAT_MD);
    CU_ASSERT_PTR_NOT_NULL_FATAL(md);
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "# Bastion benchmark (ops)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "commit 0123456789ab,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "memory read bandwidth (baseline): 20 GB/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| matmul | q4_1 | 1536x1x576 | smollm2 ffn_gate/up decode "
                                      "| cpu:0 | ref | 100 µs | 99 µs | 101 µs | 1 µs | 17.69 "
                                      "| 5.614 | 0.28 | 0.20 | - | 12 µs | 150 µs |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| 1.66 | - | 1.25 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- same-size cold read of 540 KiB (matmul q4_1 "
                                      "1536x1x576 on cpu:0): 20 µs, 27.6 GB/s (2 threads, 243 "
                                      "copies); hand-off round trip: 250 ns\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- matmul f32 4096x512x14336 on cpu:0 variant ref: skipped: "
                                      "estimated 3.5 s"));
    free(md);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_report_svg(void)
{
    char *svg = report_text("bench/a.json", BENCH_FORMAT_SVG);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT_EQUAL(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, "</svg>\n"));
    CU_ASSERT_EQUAL(count(svg, "fill=\"#4a7fb5\""), 4); /* one bar per measured result */
    /* Groups per backend and op, each scaled to its own best. */
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">cpu / matmul (GFLOP/s)</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">cpu / add (GB/s)</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">cpu / silu (GB/s)</text>"));
    CU_ASSERT_EQUAL(count(svg, "width=\"460.0\""), 3); /* best of each of the three groups */
    CU_ASSERT_EQUAL(count(svg, "width=\"431.2\""), 1); /* 16.5888 / 17.69472 of 460 */
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, "tile&amp;pack"));
    CU_ASSERT_PTR_NULL(strstr(svg, "tile&pack"));
    free(svg);
}

static char *compare_text(double threshold, bench_compare_summary *sum)
{
    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    if (bench_doc_load(bst_test_fixture("bench/a.json"), &a, &e) != BST_OK)
        return NULL;
    if (bench_doc_load(bst_test_fixture("bench/b.json"), &b, &e) != BST_OK) {
        bench_doc_free(&a);
        return NULL;
    }
    char *buf = doc_text(&a, BENCH_FORMAT_MD, &b, threshold, sum);
    bench_doc_free(&a);
    bench_doc_free(&b);
    return buf;
}

static const char *line_with(const char *text, const char *needle, char *buf, size_t n)
{
    const char *p = strstr(text, needle);
    if (!p)
        return "";
    if (*p == '\n')
        p++;
    while (p > text && p[-1] != '\n')
        p--;
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len >= n)
        len = n - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

static void test_compare(void)
{
    bench_compare_summary s;
    char *text = compare_text(5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(s.matched, 3);
    CU_ASSERT_EQUAL(s.regressions, 1);
    CU_ASSERT_EQUAL(s.improvements, 1);
    CU_ASSERT_EQUAL(s.noisy, 1);
    CU_ASSERT_EQUAL(s.only_a, 1);
    CU_ASSERT_EQUAL(s.only_b, 1);
    char line[256];
    /* 120 us against 100 us: 1.2, flagged. */
    line_with(text, "1536x1x576", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.200"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "REGRESSION"));
    /* 515 ns against 500: 1.03, within the threshold; its spread marks it noisy. */
    line_with(text, "\nadd ", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.030"));
    CU_ASSERT_PTR_NULL(strstr(line, "REGRESSION"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "(noisy)"));
    line_with(text, "tile&pack", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "0.900"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "improvement"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Measured only in A:\n  silu f32 1x1536"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Measured only in B:\n  rms_norm f32 1x576"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Noise threshold 5%"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "B/A 0.950")); /* bandwidth 19 vs 20 GB/s */
    free(text);

    /* A looser threshold flags nothing: 1.2 < 1.25 and 0.9 > 1/1.25. */
    text = compare_text(25.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(s.regressions, 0);
    CU_ASSERT_EQUAL(s.improvements, 0);
    CU_ASSERT_PTR_NULL(strstr(text, "  REGRESSION")); /* no verdict in the table */
    free(text);
}

/* Whole-model rows compare tokens per second: fewer is slower. */
static void test_compare_model(void)
{
    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_a.json"), &a, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_b.json"), &b, &e), BST_OK);
    CU_ASSERT_TRUE(a.has_model);
    CU_ASSERT_EQUAL(a.n_model_results, 1);
    bench_compare_summary s;
    char *buf = doc_text(&a, BENCH_FORMAT_MD, &b, 5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL(s.matched, 2);
    CU_ASSERT_EQUAL(s.regressions, 1);
    CU_ASSERT_EQUAL(s.improvements, 1);
    char line[256];
    /* pp512: 5 s -> 4 s per prompt, 102.40 -> 128.00 tok/s. */
    line_with(buf, "pp512", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "102.40"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "128.00"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.250"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "improvement"));
    /* tg128: 10 s -> 11 s, 12.80 -> 11.64 tok/s. */
    line_with(buf, "tg128", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "12.80"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "11.64"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "0.909"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "REGRESSION"));
    free(buf);
    bench_doc_free(&a);
    bench_doc_free(&b);
}

/* n_depth: absent in older documents (0); written and read back; names the tests "tg128 @
 * d4096" in reports; model rows match only at the same depth. */
static void test_model_depth_docs(void)
{
    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_a.json"), &a, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_b.json"), &b, &e), BST_OK);
    CU_ASSERT_EQUAL(a.model_results[0].n_depth, 0);
    char name[32];
    bench_model_test_name(&a.model_results[0], true, name, sizeof name);
    CU_ASSERT_STRING_EQUAL(name, "tg128");
    a.model_results[0].n_depth = 4096;
    bench_model_test_name(&a.model_results[0], false, name, sizeof name);
    CU_ASSERT_STRING_EQUAL(name, "pp512 @ d4096");

    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(bench_doc_to_string(&a, &text, &e), BST_OK);
    bench_doc back;
    CU_ASSERT_EQUAL_FATAL(bench_doc_parse(text, &back, &e), BST_OK);
    free(text);
    CU_ASSERT_EQUAL(back.model_results[0].n_depth, 4096);
    bench_doc_free(&back);

    char *buf = doc_text(&a, BENCH_FORMAT_MD, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| pp512 @ d4096 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| tg128 @ d4096 |"));
    free(buf);
    buf = doc_text(&a, BENCH_FORMAT_CSV, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, ",pp_device_tps,tg_device_tps,kv_type,n_depth\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, ",4096\n"));
    free(buf);

    /* B at depth 0 is another test; at the same depth the rows match again. */
    bench_compare_summary s;
    buf = doc_text(&a, BENCH_FORMAT_MD, &b, 5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL(s.matched, 0);
    free(buf);
    b.model_results[0].n_depth = 4096;
    buf = doc_text(&a, BENCH_FORMAT_MD, &b, 5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL(s.matched, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "tg128 @ d4096"));
    free(buf);
    bench_doc_free(&a);
    bench_doc_free(&b);
}

static void test_cli_report_compare(void)
{
    char a[512], b[512];
    snprintf(a, sizeof a, "%s", bst_test_fixture("bench/a.json"));
    snprintf(b, sizeof b, "%s", bst_test_fixture("bench/b.json"));
    char out_buf[256];
    const char *out = tmp_path("report.svg", out_buf, sizeof out_buf);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report", a, "--format", "svg", "-o", out), 0);
    size_t size = 0;
    char *svg = bst_test_read_file(out, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT_EQUAL(strncmp(svg, "<svg", 4), 0);
    free(svg);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report", a, "--format", "csv"), 0);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report", a, "--format", "pdf"), 2);
    /* compare: exit 1 when something regressed, 0 when nothing did. */
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a, b), 1);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a, b, "--threshold", "25"), 0);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", b, b), 0);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a, b, "--threshold", "x"), 2);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"report_csv", test_report_csv},
        {"report_md", test_report_md},
        {"report_svg", test_report_svg},
        {"compare", test_compare},
        {"compare_model", test_compare_model},
        {"model_depth_docs", test_model_depth_docs},
        {"cli_report_compare", test_cli_report_compare},
        {"cleanup", bench_test_cleanup},
        {NULL, NULL},
    };
    return bst_test_run_suite("bench_docs", cases);
}
