/* Static facts of dtypes (names, GGUF block geometry) and the public op-name lookup. */
#include "graph/ir.h"

typedef struct dtype_info {
    const char *name;
    uint32_t block_size;  /* elements per block */
    uint32_t block_bytes; /* bytes per block */
} dtype_info;

/* Block geometry follows llama.cpp's ggml-common.h so GGUF tensors are used in place. */
static const dtype_info dtypes[] = {
    [BST_DTYPE_INVALID] = {NULL, 0, 0},  [BST_DTYPE_F32] = {"f32", 1, 4},
    [BST_DTYPE_F16] = {"f16", 1, 2},     [BST_DTYPE_BF16] = {"bf16", 1, 2},
    [BST_DTYPE_I32] = {"i32", 1, 4},     [BST_DTYPE_I8] = {"i8", 1, 1},
    [BST_DTYPE_Q4_0] = {"q4_0", 32, 18}, [BST_DTYPE_Q4_1] = {"q4_1", 32, 20},
    [BST_DTYPE_Q5_0] = {"q5_0", 32, 22}, [BST_DTYPE_Q5_1] = {"q5_1", 32, 24},
    [BST_DTYPE_Q8_0] = {"q8_0", 32, 34},
};
_Static_assert(sizeof dtypes / sizeof dtypes[0] == BST_DTYPE_COUNT, "one entry per dtype");

BST_API const char *bst_dtype_name(bst_dtype type)
{
    if ((unsigned)type >= BST_DTYPE_COUNT)
        return NULL;
    return dtypes[type].name;
}

BST_API uint32_t bst_dtype_block_size(bst_dtype type)
{
    if ((unsigned)type >= BST_DTYPE_COUNT)
        return 0;
    return dtypes[type].block_size;
}

BST_API uint32_t bst_dtype_block_bytes(bst_dtype type)
{
    if ((unsigned)type >= BST_DTYPE_COUNT)
        return 0;
    return dtypes[type].block_bytes;
}

BST_API const char *bst_op_name(bst_op op)
{
    const bsti_op_info *info = bsti_op_get(op);
    return info ? info->name : NULL;
}
