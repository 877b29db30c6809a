/* cuda_config.c: the CUDA backend's configuration (vl_cuda_config, kernels.h): its defaults and
 * the one "key=value" parser that vlrun's and vlbench's --cuda-opt share. Plain C in every build
 * (a build without CUDA still parses the options, then has no backend to give them to).
 * Leaves out: reading the environment (every knob is set by the caller, once, at creation). */
#include "kernels/kernels.h"
#include "kernels/say.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void vl_cuda_config_init(vl_cuda_config *c) {
    *c = (vl_cuda_config){.gemv_bf16 = 1,
                          .gemv_quant_m1 = -1,
                          .gemv_rows16 = 1,
                          .gemv_row_tiles = 3,
                          .gemv_nf4_regs = 4,
                          .gemv_lean = 1,
                          .pdl = 1,
                          .quant_gemv_rows = 32,
                          .dq_overlap = 1,
                          .attn_decode_waves = 1,
                          .attn_decode_tail = 1,
                          .attn_prefill_wgmma = 3};
}

/* One key: its field (an int or a long) and what it accepts. */
typedef struct {
    const char *key;
    size_t offset;
    int is_long;
    long lo, hi;      /* the range (pow2 and rows narrow it) */
    const char *what; /* the accepted values, for the message */
    int pow2;         /* only 0 and powers of two up to hi (the split counts) */
    int rows;         /* 1: only 0, 64 and 128 */
} config_key;

#define FIELD(f) offsetof(vl_cuda_config, f)
static const config_key keys[] = {
    {"device", FIELD(device), 0, 0, 1023, "a device ordinal 0..1023", 0, 0},
    {"no_graphs", FIELD(no_graphs), 0, 0, 1, "0 or 1", 0, 0},
    {"gemv_bf16", FIELD(gemv_bf16), 0, 0, 1, "0 or 1", 0, 0},
    {"gemv_bf16_splits", FIELD(gemv_bf16_splits), 0, 0, 8, "0 (chosen per shape), 1, 2, 4 or 8", 1,
     0},
    {"gemv_quant_m1", FIELD(gemv_quant_m1), 0, -1, 1, "-1 (where it measured faster), 0 or 1", 0,
     0},
    {"gemv_quant_m1_splits", FIELD(gemv_quant_m1_splits), 0, 0, 8,
     "0 (chosen per shape), 1, 2, 4 or 8", 1, 0},
    {"gemv_rows16", FIELD(gemv_rows16), 0, 0, 1, "0 or 1", 0, 0},
    {"gemv_row_tiles", FIELD(gemv_row_tiles), 0, 1, 3, "1, 2 or 3", 0, 0},
    {"gemv_nf4_regs", FIELD(gemv_nf4_regs), 0, 0, 4,
     "0..4 (words of each 16-byte NF4 chunk looked up in registers, the rest in shared memory)", 0,
     0},
    {"gemv_lean", FIELD(gemv_lean), 0, 0, 1, "0 or 1", 0, 0},
    {"pdl", FIELD(pdl), 0, 0, 1, "0 or 1", 0, 0},
    {"quant_gemv_rows", FIELD(quant_gemv_rows), 0, 0, 256, "rows 0..256 (0: never)", 0, 0},
    {"dq_wgmma", FIELD(dq_wgmma), 0, 0, 1, "0 or 1", 0, 0},
    {"dq_overlap", FIELD(dq_overlap), 0, 0, 1, "0 or 1", 0, 0},
    {"dq_slice_rows", FIELD(dq_slice_rows), 0, 0, 1 << 20, "0 (the rule) or rows 1..1048576", 0, 0},
    {"attn_decode_splits", FIELD(attn_decode_splits), 0, 0, 1024,
     "0 (one wave of the GPU) or a split count 1..1024", 0, 0},
    {"attn_decode_waves", FIELD(attn_decode_waves), 0, 1, 64, "waves 1..64", 0, 0},
    {"attn_decode_tail", FIELD(attn_decode_tail), 0, 0, 1, "0 or 1", 0, 0},
    {"attn_prefill_wgmma", FIELD(attn_prefill_wgmma), 0, 0, 3,
     "0 (mma.sync), 1 (wgmma, one tile at a time), 2 (wgmma, pingpong) or 3 (pingpong, each "
     "softmax beside its own P.V)",
     0, 0},
    {"attn_prefill_rows", FIELD(attn_prefill_rows), 0, 0, 128, "0 (by length), 64 or 128", 0, 1},
    {"profile_step", FIELD(profile_step), 1, 0, 1000000000L, "0 (never) or a replay number", 0, 0},
};

static int accepted(const config_key *k, long v) {
    if (v < k->lo || v > k->hi) return 0;
    if (k->pow2) return v == 0 || (v & (v - 1)) == 0;
    if (k->rows == 1) return v == 0 || v == 64 || v == 128;
    return 1;
}

int vl_cuda_config_set(vl_cuda_config *c, const char *key_eq_value, char *why, size_t why_len) {
    const char *eq = strchr(key_eq_value, '=');
    if (!eq)
        return vl_say(why, why_len, "--cuda-opt %s: expected KEY=VALUE (e.g. no_graphs=1)",
                      key_eq_value);
    const size_t len = (size_t)(eq - key_eq_value);
    const config_key *k = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !k; i++)
        if (strlen(keys[i].key) == len && strncmp(keys[i].key, key_eq_value, len) == 0)
            k = &keys[i];
    if (!k) {
        char list[512] = "";
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     keys[i].key);
        return vl_say(why, why_len, "--cuda-opt %s: unknown key '%.*s'; the keys are %s",
                      key_eq_value, (int)len, key_eq_value, list);
    }
    char *end = NULL;
    errno = 0;
    const long v = strtol(eq + 1, &end, 10);
    if (eq[1] == '\0' || *end != '\0' || errno || !accepted(k, v))
        return vl_say(why, why_len, "--cuda-opt %s: %s takes %s", key_eq_value, k->key, k->what);
    if (k->is_long)
        *(long *)((char *)c + k->offset) = v;
    else
        *(int *)((char *)c + k->offset) = (int)v;
    return 0;
}
