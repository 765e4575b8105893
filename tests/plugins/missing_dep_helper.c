/* tests/plugins/missing_dep_helper.c — the dependency missing_dep links against; it is built
 * where the dynamic loader does not look. */
__attribute__((visibility("default"))) int bst_missing_dep_helper(void);
__attribute__((visibility("default"))) int bst_missing_dep_helper(void) { return 42; }
