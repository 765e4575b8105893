/* Uses only the installed public header: creates a context and checks that the installed CPU
 * backend was found next to the installed library (no environment, no build-tree path). */
#include <bastion/bastion.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    bst_context *ctx = NULL;
    if (bst_context_create(NULL, &ctx) != BST_OK) {
        fprintf(stderr, "context: %s\n", bst_last_error());
        return 1;
    }
    int cpu_loaded = 0;
    for (uint32_t i = 0; i < bst_context_plugin_count(ctx); i++) {
        bst_plugin_record r = {.struct_size = sizeof r};
        if (bst_context_plugin(ctx, i, &r) == BST_OK && strcmp(r.name, "cpu") == 0 &&
            r.state == BST_PLUGIN_LOADED) {
            printf("cpu backend loaded from %s\n", r.path);
            cpu_loaded = 1;
        }
    }
    bst_context_destroy(ctx);
    printf("bastion %s\n", bst_version());
    return cpu_loaded ? 0 : 1;
}
