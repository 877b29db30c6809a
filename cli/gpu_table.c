/* gpu_table.c: the cards `vlrun plan --gpu NAME` and `vlrun sweep --gpu NAME` know, and what a
 * run can use on each: the memory cudaMemGetInfo reports as total, and the CUDA context.
 *
 * nvidia-smi's memory.total is published for every card (the same figures in many nvidia-smi
 * printouts, e.g. modal-labs/modal-client pull request 2797: A10 23028 MiB, L4 23034 MiB,
 * A100 40GB 40960 MiB, A100 80GB 81920 MiB, H100 80GB HBM3 81559 MiB). cudaMemGetInfo reports
 * less than that as total (the driver keeps a reserve): on the H100 we measured both, and the
 * difference (VL_GPU_DRIVER_RESERVE_MIB) is taken off the other cards too, an assumption the
 * plan's output states. The CUDA context (VL_CUDA_CONTEXT_BYTES) is also the H100's figure. */
#include "cli/cli.h"

#include <ctype.h>

/* H100 80GB HBM3, driver 580.159.04 (the device machine, scripts/device.sh plan): nvidia-smi
 * memory.total 81559 MiB, cudaMemGetInfo total 85,017,493,504 bytes = 81079 MiB. */
#define VL_GPU_H100_CUDA_TOTAL_MIB 81079
#define VL_GPU_DRIVER_RESERVE_MIB  (81559 - VL_GPU_H100_CUDA_TOTAL_MIB)

static const vl_gpu_card k_cards[] = {
    {"A10", "NVIDIA A10 (and AWS A10G)", 23028, 0},
    {"L4", "NVIDIA L4", 23034, 0},
    {"A100-40G", "NVIDIA A100-SXM4-40GB / A100-PCIE-40GB", 40960, 0},
    {"A100-80G", "NVIDIA A100-SXM4-80GB / A100 80GB PCIe", 81920, 0},
    {"H100", "NVIDIA H100 80GB HBM3", 81559, VL_GPU_H100_CUDA_TOTAL_MIB},
};

/* A card name as compared: upper case, without "-", "_" or spaces, "GB" at the end as "G"
 * ("a100-80gb", "A100_80G" and "A100-80G" are the same). */
static void normalize(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        if (*s != '-' && *s != '_' && *s != ' ') out[n++] = (char)toupper((unsigned char)*s);
    out[n] = 0;
    if (n >= 2 && out[n - 1] == 'B' && out[n - 2] == 'G') out[n - 1] = 0;
}

static int same_name(const char *a, const char *b) {
    char x[64], y[64];
    normalize(a, x, sizeof x);
    normalize(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

const vl_gpu_card *vl_gpu_cards(int *n) {
    *n = (int)(sizeof k_cards / sizeof k_cards[0]);
    return k_cards;
}

const vl_gpu_card *vl_gpu_find(const char *name) {
    int n;
    const vl_gpu_card *c = vl_gpu_cards(&n);
    for (int i = 0; i < n; i++)
        if (same_name(name, c[i].name)) return &c[i];
    if (same_name(name, "A10G")) return &c[0]; /* AWS's A10: the same 23028 MiB */
    if (same_name(name, "A100")) return NULL;  /* ambiguous: 40 or 80 GB */
    return NULL;
}

int vl_gpu_budget_parse(const char *arg, vl_gpu_budget *out) {
    memset(out, 0, sizeof *out);
    const vl_gpu_card *c = arg ? vl_gpu_find(arg) : NULL;
    if (c) {
        out->card = c;
        out->measured = c->cuda_total_mib > 0;
        int mib = out->measured ? c->cuda_total_mib : c->smi_total_mib - VL_GPU_DRIVER_RESERVE_MIB;
        out->total = (size_t)mib << 20;
        snprintf(out->label, sizeof out->label, "%s", c->name);
        return 0;
    }
    int64_t bytes = arg ? vl_parse_size(arg) : -1;
    if (bytes <= 0) {
        int n;
        const vl_gpu_card *all = vl_gpu_cards(&n);
        char names[128] = "";
        size_t len = 0;
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                                    all[i].name);
        return vl_error_set("--gpu %s: expected a memory size like 24G or 80G, or a card (%s)",
                            arg ? arg : "", names);
    }
    out->total = (size_t)bytes;
    snprintf(out->label, sizeof out->label, "%s", arg);
    return 0;
}

int vl_gpu_driver_reserve_mib(void) {
    return VL_GPU_DRIVER_RESERVE_MIB;
}
