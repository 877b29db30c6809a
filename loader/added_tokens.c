/* added_tokens.c: the tokenizer's added tokens: their table (no two share an id or a content),
 * lookup by content, and splitting text at them, in time linear in the text and the tokens.
 *
 * The split's semantics are those of HF tokenizers' added-token splitting as vlrun had it: the
 * leftmost position where some token matches, the longest token there (the first listed among
 * tokens with equal patterns), then the search goes on after that token.
 *
 * How: an Aho-Corasick automaton over the REVERSED patterns, built once at load. Run over the
 * text from its end, its state after reading byte i stands for the longest reversed pattern
 * prefix that ends the reversed text[i..n), so each state's longest pattern (itself or down
 * its failure chain, kept per kind) is the longest token that starts at i: one backward pass
 * gives that for every i, and the split is a forward walk over it. A forward automaton finds
 * the leftmost start only after looking ahead for longer tokens, then scans that stretch
 * again; a trie walk from every position costs up to the longest token's length per byte.
 * Leaves out: lstrip/rstrip/single_word (tokenizer.c refuses them), reading tokenizer.json. */
#include "loader/loader.h"
#include "loader/added_tokens.h"
#include "loader/hash.h"

#include <stdlib.h>
#include <string.h>

struct vl_ac_state {
    uint32_t fail;                 /* the state of the longest proper suffix that is one */
    uint32_t first_child, sibling; /* the trie's children, for the breadth-first pass; 0: none */
    int32_t longest[2];            /* [normalized]: token index, or -1 */
    unsigned char byte;            /* on the edge into this state */
};

struct vl_ac_edge {
    uint64_t key; /* state << 8 | byte; 0: free (the root's edges are in root_next) */
    uint32_t to;
};

/* ---- the table ------------------------------------------------------------------------------ */

int vl_added_init(vl_added_tokens *a, int cap, const char *path) {
    memset(a, 0, sizeof *a);
    size_t size = vl_hash_table_size((size_t)(cap > 0 ? cap : 0));
    a->tok = calloc((size_t)(cap > 0 ? cap : 1), sizeof *a->tok);
    a->by_content = calloc(size, sizeof *a->by_content);
    a->by_id = calloc(size, sizeof *a->by_id);
    if (!a->tok || !a->by_content || !a->by_id)
        return vl_error_set("out of memory loading the added tokens of %s", path);
    a->cap = cap;
    a->slot_mask = size - 1;
    return 0;
}

/* The slot holding `content`, or the free slot where it would go. */
static size_t content_slot(const vl_added_tokens *a, const char *content) {
    size_t h = vl_hash_bytes(content, strlen(content)) & a->slot_mask;
    while (a->by_content[h] && strcmp(a->tok[a->by_content[h] - 1].content, content) != 0)
        h = (h + 1) & a->slot_mask;
    return h;
}

static size_t id_slot(const vl_added_tokens *a, int32_t id) {
    size_t h = vl_hash_pair((uint32_t)id, 0) & a->slot_mask;
    while (a->by_id[h] && a->tok[a->by_id[h] - 1].id != id) h = (h + 1) & a->slot_mask;
    return h;
}

int vl_added_add(vl_added_tokens *a, const char *content, int32_t id, bool normalized, bool nfc,
                 const char *path) {
    if (a->n >= a->cap) return vl_error_set("%s: more added tokens than announced", path);
    size_t hc = content_slot(a, content), hi = id_slot(a, id);
    if (a->by_content[hc] || a->by_id[hi]) { /* name the first earlier one, as listed */
        uint32_t c = a->by_content[hc], i = a->by_id[hi];
        uint32_t first = c && (!i || c < i) ? c : i;
        return vl_error_set("%s: added tokens \"%.60s\" and \"%.60s\" share an id or content", path,
                            a->tok[first - 1].content, content);
    }
    vl_added_token *t = &a->tok[a->n];
    t->id = id;
    t->normalized = normalized;
    t->content = strdup(content);
    if (!t->content) return vl_error_set("out of memory loading %s", path);
    a->n++; /* from here on vl_added_free frees it */
    if (normalized && nfc) {
        if (vl_nfc(content, strlen(content), &t->pattern, &t->plen) != 0) return -1;
    } else {
        t->pattern = strdup(content);
        t->plen = strlen(content);
        if (!t->pattern) return vl_error_set("out of memory loading %s", path);
    }
    a->by_content[hc] = (uint32_t)a->n;
    a->by_id[hi] = (uint32_t)a->n;
    a->any[normalized] = true;
    return 0;
}

int vl_added_find(const vl_added_tokens *a, const char *content) {
    if (!a->by_content) return -1;
    uint32_t e = a->by_content[content_slot(a, content)];
    return e ? (int)e - 1 : -1;
}

void vl_added_free(vl_added_tokens *a) {
    for (int i = 0; i < a->n; i++) {
        free(a->tok[i].content);
        free(a->tok[i].pattern);
    }
    free(a->tok);
    free(a->by_content);
    free(a->by_id);
    free(a->states);
    free(a->edges);
    memset(a, 0, sizeof *a);
}

/* ---- the automaton -------------------------------------------------------------------------- */

static uint32_t next_state(const vl_added_tokens *a, uint32_t s, unsigned char b) {
    if (s == 0) return a->root_next[b];
    uint64_t key = (uint64_t)s << 8 | b;
    for (size_t h = vl_hash_pair(s, b) & a->edge_mask;; h = (h + 1) & a->edge_mask) {
        if (a->edges[h].key == key) return a->edges[h].to;
        if (a->edges[h].key == 0) return 0;
    }
}

static void add_edge(vl_added_tokens *a, uint32_t s, unsigned char b, uint32_t to) {
    struct vl_ac_state *st = &a->states[to];
    st->byte = b;
    st->sibling = a->states[s].first_child;
    a->states[s].first_child = to;
    if (s == 0) {
        a->root_next[b] = to;
        return;
    }
    size_t h = vl_hash_pair(s, b) & a->edge_mask;
    while (a->edges[h].key) h = (h + 1) & a->edge_mask;
    a->edges[h] = (struct vl_ac_edge){(uint64_t)s << 8 | b, to};
}

/* The trie of the reversed patterns; a state's `longest` is, for now, its own token. */
static void build_trie(vl_added_tokens *a) {
    a->n_states = 1;
    a->states[0] = (struct vl_ac_state){.longest = {-1, -1}};
    for (int k = 0; k < a->n; k++) {
        const vl_added_token *t = &a->tok[k];
        uint32_t s = 0;
        for (size_t j = t->plen; j-- > 0;) {
            unsigned char b = (unsigned char)t->pattern[j];
            uint32_t next = next_state(a, s, b);
            if (!next) {
                next = a->n_states++;
                a->states[next] = (struct vl_ac_state){.longest = {-1, -1}};
                add_edge(a, s, b, next);
            }
            s = next;
        }
        if (s && a->states[s].longest[t->normalized] < 0) /* the first listed wins */
            a->states[s].longest[t->normalized] = k;
    }
}

/* Failure links, breadth first so that a state's failure state (shallower) is done before it;
 * a state without a token of its own takes its failure state's longest. */
static void build_failure(vl_added_tokens *a, uint32_t *queue) {
    size_t head = 0, tail = 0;
    for (uint32_t c = a->states[0].first_child; c; c = a->states[c].sibling) queue[tail++] = c;
    while (head < tail) {
        uint32_t u = queue[head++];
        struct vl_ac_state *su = &a->states[u];
        for (int kind = 0; kind < 2; kind++)
            if (su->longest[kind] < 0) su->longest[kind] = a->states[su->fail].longest[kind];
        for (uint32_t c = su->first_child; c; c = a->states[c].sibling) {
            uint32_t f = su->fail, to;
            while (!(to = next_state(a, f, a->states[c].byte)) && f) f = a->states[f].fail;
            a->states[c].fail = to;
            queue[tail++] = c;
        }
    }
}

int vl_added_build(vl_added_tokens *a, const char *path) {
    size_t total = 1;
    for (int k = 0; k < a->n; k++) total += a->tok[k].plen;
    if (total >= UINT32_MAX / 2)
        return vl_error_set("%s: the added tokens are too long (%zu bytes in all)", path, total);
    size_t size = vl_hash_table_size(total);
    a->states = malloc(total * sizeof *a->states);
    a->edges = calloc(size, sizeof *a->edges);
    uint32_t *queue = malloc(total * sizeof *queue);
    if (!a->states || !a->edges || !queue) {
        free(queue);
        return vl_error_set("out of memory loading the added tokens of %s", path);
    }
    a->edge_mask = size - 1;
    build_trie(a);
    build_failure(a, queue);
    free(queue);
    return 0;
}

/* ---- splitting ------------------------------------------------------------------------------ */

int vl_added_split(const vl_added_tokens *a, const char *s, size_t n, bool normalized,
                   vl_piece_fn text, vl_added_fn token, void *ctx) {
    if (n == 0) return 0;
    if (!a->any[normalized] || !a->states) return text(ctx, s, n);
    int32_t *longest = malloc(n * sizeof *longest); /* longest token starting at each byte */
    if (!longest) return vl_error_set("out of memory splitting %zu bytes of text", n);
    uint32_t st = 0;
    for (size_t i = n; i-- > 0;) {
        unsigned char b = (unsigned char)s[i];
        uint32_t to;
        while (!(to = next_state(a, st, b)) && st) st = a->states[st].fail;
        st = to;
        longest[i] = a->states[st].longest[normalized];
    }
    int rc = 0;
    size_t start = 0; /* of the text not yet handed on */
    for (size_t i = 0; i < n && rc == 0;) {
        int32_t k = longest[i];
        if (k < 0) {
            i++;
            continue;
        }
        if (i > start) rc = text(ctx, s + start, i - start);
        if (rc == 0) rc = token(ctx, k);
        i += a->tok[k].plen;
        start = i;
    }
    if (rc == 0 && start < n) rc = text(ctx, s + start, n - start);
    free(longest);
    return rc;
}
