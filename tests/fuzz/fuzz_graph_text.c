/*
 * tests/fuzz/fuzz_graph_text.c — libFuzzer harness for the IR's text form (bst_graph_parse),
 * which `bastion graph` and `bastion run-graph` read from any file a user names, and for the
 * passes a parsed graph then goes through.
 *
 * Anything but these traps:
 *  - parsing fails with a message, or gives a graph;
 *  - a graph prints, its text parses again, and that prints the same text (the printer and the
 *    parser agree on everything the parser accepts);
 *  - the passes (verify, infer, dce, cse, fold, lower) and the DOT printer run on it without
 *    crashing, each failing, if at all, with a message.
 */
#include <bastion/bastion.h>
#include <bastion/graph.h>

#include "fuzz_require.h"

#include <stdlib.h>
#include <string.h>

static void require_message(bst_status st)
{
    require(st != BST_OK && bst_last_error()[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bst_graph *g = NULL;
    bst_status st = bst_graph_parse((const char *)data, size, &g);
    if (st != BST_OK) {
        require(g == NULL);
        require_message(st);
        return 0;
    }
    require(g != NULL);
    char *text = NULL, *again = NULL, *dot = NULL;
    require(bst_graph_print(g, &text) == BST_OK && text != NULL);
    bst_graph *g2 = NULL;
    require(bst_graph_parse(text, strlen(text), &g2) == BST_OK);
    require(bst_graph_print(g2, &again) == BST_OK && strcmp(text, again) == 0);
    st = bst_graph_to_dot(g, &dot);
    if (st != BST_OK)
        require_message(st);
    static const char *const passes[] = {"verify", "infer", "dce", "cse", "fold", "lower"};
    for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++) {
        st = bst_graph_run_passes(g2, passes[i]);
        if (st != BST_OK) {
            require_message(st);
            break;
        }
    }
    bst_free(dot);
    bst_free(again);
    bst_free(text);
    bst_graph_destroy(g2);
    bst_graph_destroy(g);
    return 0;
}
