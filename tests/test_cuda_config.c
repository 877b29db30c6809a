/* test_cuda_config.c: the CUDA backend's configuration (kernels/cuda_config.c), which needs no
 * device: the defaults, every key setting its own field, and one-line refusals of unknown keys,
 * malformed settings and values out of range (the field then keeps its value). Also the
 * capabilities of each backend kind (kernels/backend_caps.c), readable without a device.
 */
#include "kernels/kernels.h"
#include "vltest.h"

#include <string.h>

static void test_defaults(void) {
    vl_cuda_config c;
    memset(&c, 0x5a, sizeof c);
    vl_cuda_config_init(&c);
    VT_CHECK_INT(c.device, 0);
    VT_CHECK_INT(c.no_graphs, 0);
    VT_CHECK_INT(c.gemv_bf16, 1);
    VT_CHECK_INT(c.gemv_bf16_splits, 0);
    VT_CHECK_INT(c.gemv_quant_m1, -1);
    VT_CHECK_INT(c.gemv_quant_m1_splits, 0);
    VT_CHECK_INT(c.gemv_rows16, 1);
    VT_CHECK_INT(c.gemv_row_tiles, 3);
    VT_CHECK_INT(c.gemv_nf4_regs, 4);
    VT_CHECK_INT(c.gemv_lean, 1);
    VT_CHECK_INT(c.pdl, 1);
    VT_CHECK_INT(c.quant_gemv_rows, 32);
    VT_CHECK_INT(c.dq_slice_rows, 0);
    VT_CHECK_INT(c.dq_overlap, 1);
    VT_CHECK_INT(c.dq_wgmma, 0);
    VT_CHECK_INT(c.attn_decode_splits, 0);
    VT_CHECK_INT(c.attn_decode_waves, 1);
    VT_CHECK_INT(c.attn_decode_tail, 1);
    VT_CHECK_INT(c.attn_prefill_wgmma, 3);
    VT_CHECK_INT(c.attn_prefill_rows, 0);
    VT_CHECK(c.profile_step == 0);
}

static void test_keys(void) {
    vl_cuda_config c;
    vl_cuda_config_init(&c);
    const char *set[] = {"device=3",           "no_graphs=1",           "gemv_bf16=0",
                         "gemv_bf16_splits=4", "gemv_quant_m1=1",       "gemv_quant_m1_splits=8",
                         "quant_gemv_rows=0",  "gemv_rows16=0",         "gemv_row_tiles=2",
                         "gemv_nf4_regs=2",    "attn_decode_splits=12", "attn_decode_waves=4",
                         "attn_decode_tail=0", "attn_prefill_rows=64",  "attn_prefill_wgmma=1",
                         "gemv_lean=0",        "profile_step=5",        "pdl=0",
                         "dq_slice_rows=4224", "dq_overlap=0",          "dq_wgmma=1"};
    for (int i = 0; i < (int)(sizeof set / sizeof set[0]); i++) {
        char why[256] = "";
        VT_CHECKF(vl_cuda_config_set(&c, set[i], why, sizeof why) == 0, "%s: %s", set[i], why);
    }
    VT_CHECK_INT(c.device, 3);
    VT_CHECK_INT(c.no_graphs, 1);
    VT_CHECK_INT(c.gemv_bf16, 0);
    VT_CHECK_INT(c.gemv_bf16_splits, 4);
    VT_CHECK_INT(c.gemv_quant_m1, 1);
    VT_CHECK_INT(c.gemv_quant_m1_splits, 8);
    VT_CHECK_INT(c.quant_gemv_rows, 0);
    VT_CHECK_INT(c.dq_slice_rows, 4224);
    VT_CHECK_INT(c.dq_overlap, 0);
    VT_CHECK_INT(c.dq_wgmma, 1);
    VT_CHECK_INT(c.gemv_rows16, 0);
    VT_CHECK_INT(c.gemv_row_tiles, 2);
    VT_CHECK_INT(c.gemv_nf4_regs, 2);
    VT_CHECK_INT(c.gemv_lean, 0);
    VT_CHECK_INT(c.pdl, 0);
    VT_CHECK_INT(c.attn_decode_splits, 12);
    VT_CHECK_INT(c.attn_decode_waves, 4);
    VT_CHECK_INT(c.attn_decode_tail, 0);
    VT_CHECK_INT(c.attn_prefill_rows, 64);
    VT_CHECK_INT(c.attn_prefill_wgmma, 1);
    VT_CHECK(c.profile_step == 5);
    VT_CHECK(vl_cuda_config_set(&c, "gemv_quant_m1=-1", NULL, 0) == 0);
    VT_CHECK_INT(c.gemv_quant_m1, -1);
}

/* A refused setting: -1, one line containing `say`, the config unchanged. */
static void refuse(const char *setting, const char *say) {
    vl_cuda_config c, before;
    vl_cuda_config_init(&c);
    before = c;
    char why[512] = "";
    int rc = vl_cuda_config_set(&c, setting, why, sizeof why);
    VT_CHECKF(rc == -1 && strstr(why, say) && !strchr(why, '\n'), "%s: rc %d, \"%s\"", setting, rc,
              why);
    VT_CHECKF(memcmp(&c, &before, sizeof c) == 0, "%s changed the config", setting);
    VT_CHECK(vl_cuda_config_set(&c, setting, NULL, 0) == -1);
}

static void test_refusals(void) {
    refuse("gemv_bf16", "--cuda-opt gemv_bf16: expected KEY=VALUE");
    refuse("fast=1", "unknown key 'fast'; the keys are device, no_graphs,");
    refuse("no_graph=1", "unknown key 'no_graph'");
    refuse("no_graphs=", "no_graphs takes 0 or 1");
    refuse("no_graphs=2", "no_graphs takes 0 or 1");
    refuse("no_graphs=1x", "no_graphs takes 0 or 1");
    refuse("gemv_bf16_splits=3", "gemv_bf16_splits takes 0 (chosen per shape), 1, 2, 4 or 8");
    refuse("gemv_bf16_splits=16", "gemv_bf16_splits takes");
    refuse("gemv_quant_m1=2", "gemv_quant_m1 takes -1");
    refuse("gemv_rows16=2", "gemv_rows16 takes 0 or 1");
    refuse("gemv_row_tiles=0", "gemv_row_tiles takes 1, 2 or 3");
    refuse("gemv_row_tiles=4", "gemv_row_tiles takes 1, 2 or 3");
    refuse("gemv_nf4_regs=5", "gemv_nf4_regs takes 0..4 (words of each 16-byte NF4 chunk");
    refuse("gemv_nf4_regs=-1", "gemv_nf4_regs takes 0..4");
    refuse("gemv_lean=2", "gemv_lean takes 0 or 1");
    refuse("pdl=2", "pdl takes 0 or 1");
    refuse("quant_gemv_rows=257", "quant_gemv_rows takes rows 0..256 (0: never)");
    refuse("dq_slice_rows=-8", "dq_slice_rows takes 0 (the rule) or rows 1..1048576");
    refuse("attn_prefill_rows=96", "attn_prefill_rows takes 0 (by length), 64 or 128");
    refuse("dq_wgmma=2", "dq_wgmma takes 0 or 1");
    refuse("dq_wgmma_cols=224", "unknown key 'dq_wgmma_cols'");
    refuse("attn_prefill_wgmma=4", "attn_prefill_wgmma takes 0 (mma.sync), 1 (wgmma, one");
    refuse("attn_decode_splits=-1", "attn_decode_splits takes");
    refuse("attn_decode_waves=0", "attn_decode_waves takes waves 1..64");
    refuse("attn_decode_tail=2", "attn_decode_tail takes 0 or 1");
    refuse("device=-1", "device takes a device ordinal");
    refuse("profile_step=99999999999999999999", "profile_step takes");
}

static void test_caps(void) {
    const vl_backend_caps *cpu = vl_backend_caps_of(VL_BACKEND_CPU);
    const vl_backend_caps *cuda = vl_backend_caps_of(VL_BACKEND_CUDA);
    VT_CHECK(cpu->kind == VL_BACKEND_CPU && strcmp(cpu->name, "cpu") == 0);
    VT_CHECK(cuda->kind == VL_BACKEND_CUDA && strcmp(cuda->name, "cuda") == 0);
    VT_CHECK_INT(cpu->act, VL_DTYPE_F32);
    VT_CHECK_INT(cuda->act, VL_DTYPE_BF16);
    VT_CHECK(vl_backend_cpu()->caps == cpu);
    VT_CHECK(cpu->naive_attention && !cpu->graphs && cpu->quantize && cpu->fill_random);
    VT_CHECK(cuda->naive_attention && cuda->graphs && cuda->quantize && cuda->fill_random);
    VT_CHECK(cuda->weight_formats & VL_CAP_WEIGHT(VL_DTYPE_NF4));
    VT_CHECK(!(cuda->weight_formats & VL_CAP_WEIGHT(VL_DTYPE_F32)));
    VT_CHECK(cpu->weight_formats & VL_CAP_WEIGHT(VL_DTYPE_F32));
    VT_CHECK_INT(cuda->max_head_dim, 128);
    VT_CHECK(cuda->workspace_bytes == VL_CUDA_WORKSPACE_BYTES && cpu->workspace_bytes == 0);
    /* the CPU takes any head dim the config parser accepts; the CUDA flash kernels stop at 128 */
    vl_attn_shape big = {16, 16, 256, 0};
    char why[256] = "";
    VT_CHECK(vl_backend_check_attention(cpu, &big, why, sizeof why) == 0 && !why[0]);
    VT_CHECK(vl_backend_check_attention(cuda, &big, why, sizeof why) == -1);
    VT_CHECKF(strcmp(why, "head_dim 256 is above 128, the largest the CUDA flash attention kernels "
                          "take; use --attn naive (any head dim up to 512) or --backend cpu") == 0,
              "%s", why);
}

int main(void) {
    test_defaults();
    test_keys();
    test_refusals();
    test_caps();
    return vt_finish();
}
