/*
 * graph/text.h — helpers shared by the text form's printer (graph/text_print.c) and parser
 * (graph/text.c): the value-name alphabet, a small string map, and running number conversions
 * in the "C" locale so a process locale with a decimal comma cannot change the format.
 */
#ifndef BASTION_GRAPH_TEXT_H
#define BASTION_GRAPH_TEXT_H

#include "graph/ir.h"

#include <locale.h>
#include <stdlib.h>
#include <string.h>

/* Characters of a value name after '%'. */
static inline bool bsti_text_ident_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.';
}

/* --- a small open-addressing map from byte strings to ids --- */

typedef struct bsti_map_entry {
    const char *key;
    size_t len;
    uint32_t value;
} bsti_map_entry;

typedef struct bsti_strmap {
    bsti_map_entry *slots;
    size_t cap; /* power of two, at least twice the number of keys */
} bsti_strmap;

static inline uint64_t bsti_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static inline bool bsti_map_init(bsti_strmap *m, size_t n_keys)
{
    size_t cap = 16;
    while (cap < n_keys * 2)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = cap;
    return m->slots != NULL;
}

/* Returns the existing entry for key, or inserts (key, value) and returns NULL. */
static inline bsti_map_entry *bsti_map_put(bsti_strmap *m, const char *key, size_t len,
                                           uint32_t value)
{
    size_t i = (size_t)bsti_hash_bytes(key, len) & (m->cap - 1);
    for (;; i = (i + 1) & (m->cap - 1)) {
        bsti_map_entry *e = &m->slots[i];
        if (!e->key) {
            e->key = key;
            e->len = len;
            e->value = value;
            return NULL;
        }
        if (e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}

static inline const bsti_map_entry *bsti_map_get(const bsti_strmap *m, const char *key, size_t len)
{
    size_t i = (size_t)bsti_hash_bytes(key, len) & (m->cap - 1);
    for (;; i = (i + 1) & (m->cap - 1)) {
        const bsti_map_entry *e = &m->slots[i];
        if (!e->key)
            return NULL;
        if (e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}

/* --- "C" locale for number conversions --- */

typedef struct bsti_c_locale {
    locale_t c, old;
} bsti_c_locale;

static inline void bsti_c_locale_enter(bsti_c_locale *l)
{
    l->c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    l->old = l->c ? uselocale(l->c) : (locale_t)0;
}

static inline void bsti_c_locale_leave(bsti_c_locale *l)
{
    if (l->c) {
        uselocale(l->old);
        freelocale(l->c);
    }
}

#endif /* BASTION_GRAPH_TEXT_H */
