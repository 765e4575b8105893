/*
 * tests/fuzz/fuzz_chat.c — libFuzzer harness for chat templates (bsti_chat_format,
 * bsti_chat_detect): the template text comes from a GGUF file and the messages from a user, and
 * both go through hand-written C that detects, parses (a ChatML template's default system
 * message) and renders.
 *
 * Input: byte 0 picks the add_assistant flag (bit 0) and the template (the rest: 0 detects it
 * from the text, else bsti_chat_template_name(rest - 1), or past the last a name no template
 * has); the other bytes, split at NUL, are the template text, then role and content of each
 * message.
 * Anything but these traps:
 *  - the status is BST_OK with a NUL-terminated text, or BST_ERR_UNSUPPORTED with a message and
 *    no text (an unknown name, an unrecognised template, one llama.cpp has and we do not render);
 *  - detection answers the same twice; without a name, no text renders (ChatML) and text
 *    detection does not recognise is refused.
 */
#include "runtime/model/chat.h"
#include "fuzz_require.h"

#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const bool add_assistant = data[0] & 1;
    const unsigned pick = data[0] >> 1;
    const char *name = NULL;
    if (pick > 0 && !(name = bsti_chat_template_name(pick - 1)))
        name = "no-such-template";

    /* The rest as NUL-separated strings (a copy with a NUL after the last). */
    char *buf = malloc(size);
    require(buf != NULL);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    const char *field[1 + 2 * MAX_MESSAGES];
    uint32_t n_fields = 0;
    for (size_t at = 0; at < size && n_fields < 1 + 2 * MAX_MESSAGES;) {
        field[n_fields++] = buf + at;
        at += strlen(buf + at) + 1;
    }
    const char *text = n_fields > 0 && field[0][0] ? field[0] : NULL;
    bst_chat_message msgs[MAX_MESSAGES];
    uint32_t n = 0;
    for (uint32_t f = 1; f + 1 < n_fields; f += 2)
        msgs[n++] = (bst_chat_message){field[f], field[f + 1]};

    const char *detected = bsti_chat_detect(text);
    require(bsti_chat_detect(text) == detected);
    char *out = NULL;
    bst_status st = bsti_chat_format(text, name, msgs, n, add_assistant, &out);
    if (st == BST_OK) {
        require(out != NULL);
        /* NUL-terminated within its allocation: ASan checks the read (volatile: kept) */
        volatile size_t len = strlen(out);
        (void)len;
        free(out);
    } else {
        require(st == BST_ERR_UNSUPPORTED && out == NULL && bst_last_error()[0] != '\0');
    }
    if (!name) /* without a name: no text is ChatML; unrecognised text is refused */
        require(text ? detected != NULL || st == BST_ERR_UNSUPPORTED : st == BST_OK);
    free(buf);
    return 0;
}
