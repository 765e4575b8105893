/*
 * examples/embed/embed.c — the smallest useful program on Bastion's embedding API: load a GGUF
 * model, chat-format a question, and stream the answer to stdout. It includes only
 * <bastion/bastion.h> and links only libbastion, exactly as an application using an installed
 * Bastion would (see CMakeLists.txt next to it, or: cc embed.c $(pkg-config --cflags --libs
 * bastion)).
 *
 * Usage: bastion-embed MODEL.gguf [QUESTION]
 * Exit status: 0 on success, 1 on any failure (with Bastion's message on stderr).
 */
#include <bastion/bastion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every fallible Bastion call returns a status; the message behind it is bst_last_error(). */
static int fail(const char *what, bst_status st)
{
    fprintf(stderr, "embed: %s: %s: %s\n", what, bst_status_name(st), bst_last_error());
    return 1;
}

/* Called with each generated token's text, cut at UTF-8 character boundaries. */
static bool print_piece(void *user, int32_t token, const char *piece, size_t length)
{
    (void)user;
    (void)token;
    fwrite(piece, 1, length, stdout);
    fflush(stdout);
    return true; /* false would stop generating */
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL.gguf [QUESTION]\n", argv[0]);
        return 2;
    }
    const char *question = argc == 3 ? argv[2] : "What is the capital of France?";

    /* A context finds the backend plugins (BASTION_BACKEND_PATH, then the installed ones). */
    bst_context_options co = {.struct_size = sizeof co};
    bst_context *ctx = NULL;
    bst_status st = bst_context_create(&co, &ctx);
    if (st != BST_OK)
        return fail("creating the context", st);

    bst_model *model = NULL;
    st = bst_model_load(ctx, argv[1], NULL, &model);
    if (st != BST_OK) {
        int rc = fail("loading the model", st);
        bst_context_destroy(ctx);
        return rc;
    }

    /* The model's own chat template turns the conversation into its prompt text. */
    bst_chat_message msg = {.role = "user", .content = question};
    char *prompt = NULL;
    int32_t *tokens = NULL;
    uint32_t n_tokens = 0;
    bst_session *session = NULL;
    int rc = 0;
    st = bst_chat_format(model, NULL, &msg, 1, true, &prompt);
    if (st != BST_OK)
        rc = fail("formatting the prompt", st);

    /* Tokenize twice: once for the count, once into a buffer of that size. */
    if (rc == 0)
        st = bst_tokenize(model, prompt, strlen(prompt), true, NULL, 0, &n_tokens);
    if (rc == 0 && st != BST_OK)
        rc = fail("tokenizing", st);
    if (rc == 0 && !(tokens = malloc(n_tokens * sizeof *tokens))) {
        fprintf(stderr, "embed: out of memory\n");
        rc = 1;
    }
    if (rc == 0 && (st = bst_tokenize(model, prompt, strlen(prompt), true, tokens, n_tokens,
                                      &n_tokens)) != BST_OK)
        rc = fail("tokenizing", st);

    /* A session holds one conversation's KV cache. */
    bst_session_options so = {.struct_size = sizeof so, .n_ctx = 512};
    if (rc == 0 && (st = bst_session_create(model, &so, &session)) != BST_OK)
        rc = fail("creating the session", st);

    /* Greedy decoding: the same answer on every run and every machine. */
    bst_sampler_params sampler = {.struct_size = sizeof sampler, .temperature = 0.0f,
                                  .top_p = 1.0f, .repeat_penalty = 1.0f};
    bst_generate_stats stats = {.struct_size = sizeof stats};
    if (rc == 0 && (st = bst_generate(session, tokens, n_tokens, 128, &sampler, print_piece,
                                      NULL, NULL, &stats)) != BST_OK)
        rc = fail("generating", st);
    if (rc == 0)
        fprintf(stderr, "\n[%u prompt tokens, %u generated, %.1f tokens/s]\n", stats.n_prompt,
                stats.n_generated,
                stats.generate_seconds > 0 ? stats.n_generated / stats.generate_seconds : 0.0);

    bst_session_destroy(session);
    free(tokens);
    bst_free(prompt);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
    return rc;
}
