/* tests/fuzz/plugin_elf_seed.c — built into the small shared object fuzz_plugin_elf starts from:
 * exported functions and data beside a hidden and a static one, as a plugin has. */
int bst_seed_answer(void);
int bst_seed_answer(void) { return 42; }
int bst_seed_value = 7;
__attribute__((visibility("hidden"))) int bst_seed_hidden(void);
__attribute__((visibility("hidden"))) int bst_seed_hidden(void) { return 1; }
static int bst_seed_local(void) { return 2; }
int bst_seed_calls_local(void);
int bst_seed_calls_local(void) { return bst_seed_local(); }
