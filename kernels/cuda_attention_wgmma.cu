/* cuda_attention_wgmma.cu: flash attention for many queries on Hopper (sm_90a): warpgroup MMA
 * (wgmma) with operands in shared memory, tiles loaded by the tensor memory accelerator (TMA),
 * and producer/consumer warp specialization, after the FlashAttention-3 design (its paper; our
 * own code). Same contract and numerics as cuda_attention_prefill.cu (the mma.sync kernel, kept
 * for sm_80/86/89 and for every call this one does not take): fp32 scores and online softmax,
 * P rounded to bf16 before P.V, o = bf16(sum / l).
 *
 *   - CTA = 3 warpgroups over 128 query rows of one head. Warpgroup 0 is the producer: it gives
 *     back most of its registers (setmaxnreg) and one thread issues the TMA loads of Q, then of
 *     K and V tiles of 128 keys into a ring of 2 stages (full / empty mbarriers per stage).
 *     Warpgroups 1 and 2 are consumers of 64 query rows each: S = Q K^T (wgmma m64n128k16, both
 *     from shared memory), mask, online softmax in registers, then O += P V (wgmma with P from
 *     registers: the S accumulators rounded to bf16 are its A fragments, as in FlashAttention-2,
 *     and V read transposed from shared memory).
 *   - Schedules (the backend's attn_prefill_wgmma): 2, pingpong: phase t issues S(t) and
 *     P.V(t - 1) as one batch, the two consumers in turn through named barriers, so the tensor
 *     cores run one consumer's products while the other computes its softmax of the tile before;
 *     3 (default) adds FlashAttention-3's overlap inside a consumer: S(t) and P.V(t - 1) are two
 *     commit groups, and the softmax of tile t runs once S(t) is done, beside the consumer's own
 *     P.V(t - 1); 1 runs each tile's products one after the other (no turns). 3 applies to
 *     causal calls; the others (vision: segments) run 2, where 3 measured 0.4-1.6% slower.
 *     Measured on the H100 (bench/RESULTS.md): 2 is 5-9% faster than 1; 3 is 0.6-10% faster
 *     than 2 on causal prefill (S21, two runs).
 *   - No wgmma sits in a branch: ptxas serializes every wgmma of a kernel that has one there
 *     (waits after each). So both consumers run every tile of the CTA's key range; a tile none
 *     of a consumer's rows sees is all masked and changes nothing.
 *   - Shared tiles: rows of 64 bf16 in the 128-byte swizzle TMA writes and wgmma reads
 *     (cuda_hopper.cuh), the head dim in two such column blocks: Q 32 KB, each K or V stage
 *     32 KB, 160 KB in all (one CTA per SM).
 *   - Head dims 128 and 80. At 80 the tensor maps end at column 80, so TMA fills columns 80..127
 *     with zeros: S runs over 5 k steps of 16, and P.V over 128 columns of which 80 are stored.
 *   - Rows past n_q and keys past n_kv are zeros from TMA (out of the tensor), never NaN from
 *     memory; with a runtime length (n_past_dev) the maps end at the bound, and the V rows past
 *     the length are zeroed in shared memory. Keys of other segments or past the causal
 *     diagonal are masked to -inf, on the tiles that cut some row's range (row_key_range, as
 *     the mma.sync kernel). Causal grids hand out the longest query blocks first.
 *   - int8 cache (--kv int8, k_scale set; D 128): the producer warpgroup's 128 threads make the
 *     bf16 tiles. Thread 0 brings each tile's codes (128 keys x 128 bytes) by TMA into a 2-stage
 *     staging ring (64 KB more shared memory: 225 KB in all); thread r turns row r of it into
 *     bf16(code * scale) in the K or V stage (the values the engine's dequantized copy of the
 *     cache held, so the output bits are those of the bf16 kernel over that copy), fences it for
 *     the async proxy and its warp arrives on the stage's full barrier (4 arrivals). Keys at or
 *     past the cache length get scale 0 (zero rows). 40 registers for the producer, 232 for the
 *     consumers. Measured (S22, H100, a 2048-query chunk at 38192): 333.5 against 507.1 TFLOP/s
 *     over a bf16 cache: the conversion, about 4 instructions a code, is redone by every query
 *     block and doubles the kernel's instructions. So the engine reads the codes directly only
 *     when its dequantized copy of the layer does not fit (engine/pipeline.c).
 * Takes (vl_attn_prefill_wgmma): a compute capability 9.0 device in a build with sm_90a code,
 * attn_prefill_wgmma > 0, head dim 80 or 128 (an int8 cache: 128), the fast path's alignment,
 * plain rows (no pages, no batch). Everything else goes to cuda_attention_prefill.cu.
 * Leaves out: paged pools read directly (the engine gathers a sequence first), a persistent grid,
 * TMA stores of the output.
 */
#include "kernels/cuda_attention_mma.cuh"
#include "kernels/cuda_hopper.cuh"
#include "kernels/cuda_internal.h"

#include <limits.h>

using namespace vl_attn;

namespace vl_attn_wgmma { /* named: a build without sm_90a code leaves parts unused */

/* The kernel's shape. */
struct H {
    static constexpr int kWgThreads = 128;
    static constexpr int kThreads = 3 * kWgThreads; /* producer + 2 consumers */
    static constexpr int kBM = 128;                 /* query rows per CTA, 64 per consumer */
    static constexpr int kBN = 128;                 /* keys per tile */
    static constexpr int kStages = 2;               /* K/V tiles in flight */
    static constexpr int kRowBytes = 128;           /* a swizzled row: 64 bf16 */
    static constexpr int kAtoms = 2;                /* column blocks of 64: head dims to 128 */
    static constexpr int kTileBytes = kAtoms * kBN * kRowBytes; /* a Q, K or V tile: 32 KB */
    static constexpr int kQ8TileBytes = kBN * 128; /* int8 cache: a K or V tile of codes, D 128 */
    /* q; k/v full; k/v empty; int8 cache: k/v staged (the codes of a tile landed) */
    static constexpr int kBars = 1 + 6 * kStages;
    /* shared memory: Q, the K and V stages, (int8 cache) the staging ring of codes, barriers */
    __host__ __device__ static constexpr int staging_bytes(bool q8) {
        return q8 ? 2 * kStages * kQ8TileBytes : 0;
    }
    __host__ __device__ static constexpr int smem_bytes(bool q8) {
        return 1024 /* alignment */ + (1 + 2 * kStages) * kTileBytes + staging_bytes(q8) +
               8 * kBars;
    }
    static constexpr int kConsumerWarps = 2 * kWgThreads / 32;
    /* barrier indices */
    static constexpr int q_full = 0;
    static constexpr int kTurn = 3;     /* named barriers 3, 4: the consumers' turns (pingpong) */
    static constexpr int kProducer = 5; /* named barrier 5: the int8 producer's 128 threads */
    __device__ static constexpr int k_full(int s) { return 1 + s; }
    __device__ static constexpr int v_full(int s) { return 1 + kStages + s; }
    __device__ static constexpr int k_empty(int s) { return 1 + 2 * kStages + s; }
    __device__ static constexpr int v_empty(int s) { return 1 + 3 * kStages + s; }
    __device__ static constexpr int k_staged(int s) { return 1 + 4 * kStages + s; }
    __device__ static constexpr int v_staged(int s) { return 1 + 5 * kStages + s; }
    /* tile t's stage, its K and V tiles (s_kv: the first K stage), and the parity of the
     * stage's phase that brings tile t (the producer waits for the one before) */
    __device__ static constexpr int stage(int t) { return t % kStages; }
    __device__ static constexpr uint32_t k_tile(uint32_t s_kv, int t) {
        return s_kv + (uint32_t)stage(t) * kTileBytes;
    }
    __device__ static constexpr uint32_t v_tile(uint32_t s_kv, int t) {
        return s_kv + (uint32_t)(kStages + stage(t)) * kTileBytes;
    }
    __device__ static constexpr uint32_t parity(int t) { return (uint32_t)(t / kStages) & 1u; }
    /* int8 cache: tile t's codes of K and V in the staging ring (s_st: its first K stage) */
    __device__ static constexpr uint32_t k8_tile(uint32_t s_st, int t) {
        return s_st + (uint32_t)stage(t) * kQ8TileBytes;
    }
    __device__ static constexpr uint32_t v8_tile(uint32_t s_st, int t) {
        return s_st + (uint32_t)(kStages + stage(t)) * kQ8TileBytes;
    }
};
static_assert(H::kBM == H::kBN, "Q and K/V tiles share the tile size");

/* A tensor map's coordinate order: (column, head, row), or (column, row, head) when the head
 * stride is the larger (a head-major cache), so that strides grow with the dimension. */
struct MapOrder {
    int rows_second;
};

#ifdef VL_HOPPER_DEVICE
using namespace vl_hopper;

/* A tile of kBN rows from row0 of one head: ATOMS boxes of 128 bytes of columns (a bf16 tile:
 * the head dim's column blocks; an int8 cache's codes: one box, the whole row). */
template <int ATOMS = H::kAtoms>
__device__ __forceinline__ void tma_tile(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                         MapOrder order, int head, int row0) {
#pragma unroll
    for (int a = 0; a < ATOMS; a++) {
        if (order.rows_second)
            tma_load_3d(dst + a * H::kBN * H::kRowBytes, map, bar, a * 64, row0, head);
        else
            tma_load_3d(dst + a * H::kBN * H::kRowBytes, map, bar, a * 64, head, row0);
    }
}

/* The producer's first loads (one thread): the maps prefetched, the Q tile. */
__device__ __forceinline__ void load_q(const CUtensorMap *tm_q, const CUtensorMap *tm_k,
                                       const CUtensorMap *tm_v, MapOrder q_order, uint32_t s_q,
                                       uint32_t bars, int head, int q0) {
    tma_prefetch_map(tm_q);
    tma_prefetch_map(tm_k);
    tma_prefetch_map(tm_v);
    bar_arrive_expect(bars + 8 * H::q_full, H::kTileBytes);
    tma_tile(s_q, tm_q, bars + 8 * H::q_full, q_order, head, q0);
}

/* One thread issues every load: Q once, then K(t) and V(t) as their stages free up. */
__device__ __forceinline__ void produce(const CUtensorMap *tm_q, const CUtensorMap *tm_k,
                                        const CUtensorMap *tm_v, MapOrder q_order,
                                        MapOrder kv_order, uint32_t s_q, uint32_t s_kv,
                                        uint32_t bars, int head, int kv_head, int q0, int kv_lo,
                                        int n_tiles) {
    load_q(tm_q, tm_k, tm_v, q_order, s_q, bars, head, q0);
    for (int t = 0; t < n_tiles; t++) {
        const int s = H::stage(t), n0 = kv_lo + t * H::kBN;
        const uint32_t freed = H::parity(t) ^ 1u;  /* the consumers' release of tile t - kStages */
        bar_wait(bars + 8 * H::k_empty(s), freed); /* first pass: a fresh barrier, free */
        bar_arrive_expect(bars + 8 * H::k_full(s), H::kTileBytes);
        tma_tile(H::k_tile(s_kv, t), tm_k, bars + 8 * H::k_full(s), kv_order, kv_head, n0);
        bar_wait(bars + 8 * H::v_empty(s), freed);
        bar_arrive_expect(bars + 8 * H::v_full(s), H::kTileBytes);
        tma_tile(H::v_tile(s_kv, t), tm_v, bars + 8 * H::v_full(s), kv_order, kv_head, n0);
    }
}

/* int8 cache: row r of a staged tile of codes (128 bytes a row, in the 128-byte swizzle TMA
 * wrote) into row r of a bf16 tile (two column blocks of 64, the swizzle the consumers read).
 * A quarter warp takes 8 consecutive rows, whose swizzles differ: no bank conflicts. */
__device__ __forceinline__ void convert_row(uint32_t src, uint32_t dst, int r, float scale) {
    const uint32_t sw = (uint32_t)(r & 7), src_row = src + (uint32_t)(r * 128);
#pragma unroll 2
    for (uint32_t c = 0; c < 8; c++) { /* codes 16 c .. 16 c + 15 */
        uint32_t w0, w1, w2, w3;
        asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(w0), "=r"(w1), "=r"(w2), "=r"(w3)
                     : "r"(src_row + ((c ^ sw) << 4)));
        /* bf16(code * scale) (vl_int8x4_scaled_to_bf16x4: no I2F, whose unit exp2 shares) */
        const uint2 a = vl_int8x4_scaled_to_bf16x4(w0, scale),
                    b = vl_int8x4_scaled_to_bf16x4(w1, scale);
        const uint2 e = vl_int8x4_scaled_to_bf16x4(w2, scale),
                    f = vl_int8x4_scaled_to_bf16x4(w3, scale);
        /* columns 16 c ..: column block c / 4, 16-byte chunks 2 (c % 4) and the next */
        const uint32_t row = dst + (c / 4) * (uint32_t)(H::kBN * H::kRowBytes) +
                             (uint32_t)(r * H::kRowBytes),
                       j = 2 * (c % 4);
        asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(row + ((j ^ sw) << 4)),
                     "r"(a.x), "r"(a.y), "r"(b.x), "r"(b.y)
                     : "memory");
        asm volatile(
            "st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(row + (((j + 1) ^ sw) << 4)),
            "r"(e.x), "r"(e.y), "r"(f.x), "r"(f.y)
            : "memory");
    }
}

/* The producer of an int8 cache (D 128), all 128 threads of warpgroup 0: thread 0 issues the TMA
 * loads (Q; the codes of K(t) and V(t) into a 2-stage staging ring), and each thread r turns row
 * r of every staged tile into bf16(code * scale) in the K or V stage once the consumers have
 * freed it. Rows at or past n_keys (the cache length, read at run time or not) get scale 0: zero
 * rows, whatever their codes and scales in memory hold. */
__device__ __forceinline__ void produce_q8(const vl_attn_params &p, const CUtensorMap *tm_q,
                                           const CUtensorMap *tm_k, const CUtensorMap *tm_v,
                                           MapOrder q_order, MapOrder kv_order, uint32_t s_q,
                                           uint32_t s_kv, uint32_t s_st, uint32_t bars, int head,
                                           int kv_head, int q0, int kv_lo, int n_tiles,
                                           int n_keys) {
    const int tid = (int)threadIdx.x, lane = tid % 32;
    const auto stage_codes =
        [&](int t) { /* thread 0 */
                     const int s = H::stage(t), n0 = kv_lo + t * H::kBN;
                     bar_arrive_expect(bars + 8 * H::k_staged(s), H::kQ8TileBytes);
                     tma_tile<1>(H::k8_tile(s_st, t), tm_k, bars + 8 * H::k_staged(s), kv_order,
                                 kv_head, n0);
                     bar_arrive_expect(bars + 8 * H::v_staged(s), H::kQ8TileBytes);
                     tma_tile<1>(H::v8_tile(s_st, t), tm_v, bars + 8 * H::v_staged(s), kv_order,
                                 kv_head, n0);
        };
    if (tid == 0) {
        load_q(tm_q, tm_k, tm_v, q_order, s_q, bars, head, q0);
        for (int t = 0; t < H::kStages && t < n_tiles; t++) stage_codes(t);
    }
    const float *k_scale = p.k_scale + (int64_t)kv_head * p.kv_scale_head_stride;
    const float *v_scale = p.v_scale + (int64_t)kv_head * p.kv_scale_head_stride;
    /* this thread's key of tile t and its scales, loaded a tile ahead: each tile's conversion
     * would otherwise wait for its loads */
    const auto scale_of = [&](const float *sc, int t) {
        const int key = kv_lo + t * H::kBN + tid;
        return t < n_tiles && key < n_keys ? __ldg(sc + key) : 0.f;
    };
    float ks_next = scale_of(k_scale, 0), vs_next = scale_of(v_scale, 0);
    for (int t = 0; t < n_tiles; t++) {
        const int s = H::stage(t);
        const float ks = ks_next, vs = vs_next;
        ks_next = scale_of(k_scale, t + 1);
        vs_next = scale_of(v_scale, t + 1);
        const uint32_t freed = H::parity(t) ^ 1u; /* the consumers' release of tile t - kStages */
        bar_wait(bars + 8 * H::k_staged(s), H::parity(t));
        bar_wait(bars + 8 * H::k_empty(s), freed);
        convert_row(H::k8_tile(s_st, t), H::k_tile(s_kv, t), tid, ks);
        fence_proxy_async(); /* this thread's rows, before the wgmma reads them */
        __syncwarp();
        if (lane == 0) bar_arrive(bars + 8 * H::k_full(s));
        bar_wait(bars + 8 * H::v_staged(s), H::parity(t));
        bar_wait(bars + 8 * H::v_empty(s), freed);
        convert_row(H::v8_tile(s_st, t), H::v_tile(s_kv, t), tid, vs);
        fence_proxy_async();
        __syncwarp();
        if (lane == 0) bar_arrive(bars + 8 * H::v_full(s));
        named_sync(H::kProducer, H::kWgThreads); /* every row of the staged codes is read */
        if (tid == 0 && t + H::kStages < n_tiles) stage_codes(t + H::kStages);
    }
}

/* Masks keys outside each of this thread's two rows' ranges (the accumulator layout of
 * cuda_hopper.cuh: sc[4i], sc[4i + 1] are row 0's, sc[4i + 2], sc[4i + 3] row 1's). */
__device__ __forceinline__ void mask_tile(float sc[64], int n0, int q, int lo0, int hi0, int lo1,
                                          int hi1) {
#pragma unroll
    for (int i = 0; i < 16; i++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int key = n0 + 8 * i + 2 * q + e;
            if (key < lo0 || key >= hi0) sc[4 * i + e] = -INFINITY;
            if (key < lo1 || key >= hi1) sc[4 * i + 2 + e] = -INFINITY;
        }
}

/* Online softmax of one tile: the new running max per row, its rescale factor alpha for what
 * was accumulated (l here; o by rescale_o), and the scores turned into probabilities in place
 * (pack_p makes them P). */
__device__ __forceinline__ void softmax_exp(float sc[64], float m[2], float l[2], float alpha[2],
                                            float scale_log2) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
        float mx = m[half];
#pragma unroll
        for (int i = 0; i < 16; i++)
            mx = fmaxf(mx, fmaxf(sc[4 * i + 2 * half], sc[4 * i + 2 * half + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)); /* the quad shares a row */
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        /* a row that has seen no key yet keeps max -inf: subtract 0, not -inf */
        const float base = mx == -INFINITY ? 0.f : mx * scale_log2;
        alpha[half] = exp2_approx(m[half] * scale_log2 - base);
        m[half] = mx;
        float sum = 0.f;
#pragma unroll
        for (int i = 0; i < 16; i++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float pe = exp2_approx(fmaf(sc[4 * i + 2 * half + e], scale_log2, -base));
                sc[4 * i + 2 * half + e] = pe;
                sum += pe;
            }
        l[half] = l[half] * alpha[half] + sum;
    }
}

/* P = bf16(the probabilities in sc) as wgmma A fragments (k step j: keys 16 j .. 16 j + 15). */
__device__ __forceinline__ void pack_p(const float sc[64], uint32_t pa[8][4]) {
#pragma unroll
    for (int j = 0; j < 8; j++) {
        pa[j][0] = vl_pack_bf16x2(sc[8 * j], sc[8 * j + 1]);
        pa[j][1] = vl_pack_bf16x2(sc[8 * j + 2], sc[8 * j + 3]);
        pa[j][2] = vl_pack_bf16x2(sc[8 * j + 4], sc[8 * j + 5]);
        pa[j][3] = vl_pack_bf16x2(sc[8 * j + 6], sc[8 * j + 7]);
    }
}

__device__ __forceinline__ void rescale_o(float o[64], const float alpha[2]) {
#pragma unroll
    for (int i = 0; i < 16; i++) {
        o[4 * i] *= alpha[0];
        o[4 * i + 1] *= alpha[0];
        o[4 * i + 2] *= alpha[1];
        o[4 * i + 3] *= alpha[1];
    }
}

/* Zeros rows [first, kBN) of a V tile (both column blocks; a row's chunks are only permuted
 * by the swizzle, so whole rows stay whole), then makes them visible to this consumer's wgmma.
 * For a runtime length (n_past_dev) the tensor map ends at the bound, so rows past the length
 * come from memory and may hold anything; P is 0 there, but 0 x NaN would not be. */
__device__ __forceinline__ void zero_v_rows(uint32_t s_v, int first, int tid_in_wg, int cw) {
    for (int e = tid_in_wg; e < (H::kBN - first) * H::kAtoms * 8; e += H::kWgThreads) {
        const int chunk = e % 8, atom = (e / 8) % H::kAtoms, row = first + e / (8 * H::kAtoms);
        const uint32_t addr =
            s_v + (uint32_t)(atom * H::kBN * H::kRowBytes + row * H::kRowBytes + chunk * 16);
        asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0u) : "memory");
    }
    fence_proxy_async();
    named_sync(1 + cw, H::kWgThreads);
}

/* A consumer warpgroup's registers: the scores of the tile in hand, P of the tile before (as
 * wgmma A fragments), the output accumulators and the running max and sum of its two rows. */
struct Consumer {
    float sc[64], o[64], m[2], l[2];
    uint32_t pa[8][4];
    float scale_log2;
    uint32_t q_rows; /* this consumer's 64 rows of the Q tile */

    __device__ __forceinline__ void o_init() {
#pragma unroll
        for (int i = 0; i < 64; i++) o[i] = 0.f;
        m[0] = m[1] = -INFINITY;
        l[0] = l[1] = 0.f;
    }
    /* sc = Q K^T over the head dim in k steps of 16 (the S accumulators are overwritten) */
    template <int D> __device__ __forceinline__ void issue_s(uint32_t s_k) {
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const uint32_t off = (uint32_t)((kk / 4) * H::kBN * H::kRowBytes + (kk % 4) * 32);
            WgmmaSS<128>::run(sc, desc_sw128(q_rows + off, 16, 1024),
                              desc_sw128(s_k + off, 16, 1024), kk > 0);
        }
    }
    /* o += P V over the tile's keys in k steps of 16 */
    __device__ __forceinline__ void issue_pv(uint32_t s_v) {
#pragma unroll
        for (int j = 0; j < H::kBN / 16; j++)
            wgmma_rs_m64n128_tb(
                o, pa[j],
                desc_sw128(s_v + (uint32_t)(j * 16 * H::kRowBytes), H::kBN * H::kRowBytes, 1024));
    }
    __device__ __forceinline__ void fence_s() {
#pragma unroll
        for (int i = 0; i < 64; i++) reg_fence(sc[i]);
    }
    __device__ __forceinline__ void fence_pv() {
#pragma unroll
        for (int i = 0; i < 64; i++) reg_fence(o[i]);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) reg_fence(pa[j][k]);
    }
};

/* o / l rounded to bf16: this thread's two rows, D columns. */
template <int D>
__device__ __forceinline__ void store_rows(const vl_attn_params &p, int head, int row0, int q,
                                           const float o[64], const float l[2]) {
    bf16 *out = static_cast<bf16 *>(p.o) + (int64_t)head * D + 2 * q;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        float sum = l[half];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        const int row = row0 + 8 * half;
        if (row >= p.n_q) continue;
        bf16 *dst = out + (int64_t)row * p.o_stride;
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            *reinterpret_cast<uint32_t *>(dst + 8 * i) =
                vl_pack_bf16x2(o[4 * i + 2 * half] * inv, o[4 * i + 2 * half + 1] * inv);
    }
}
#endif /* VL_HOPPER_DEVICE */

template <int D, int MODE, bool Q8>
__global__ void __launch_bounds__(H::kThreads, 1)
    attn_wgmma_kernel(const __grid_constant__ vl_attn_params p,
                      const __grid_constant__ CUtensorMap tm_q,
                      const __grid_constant__ CUtensorMap tm_k,
                      const __grid_constant__ CUtensorMap tm_v, MapOrder q_order,
                      MapOrder kv_order) {
#ifdef VL_HOPPER_DEVICE
    static_assert(D % 16 == 0 && D > 64 && D <= 128, "two column blocks of 64");
    static_assert(!Q8 || D == 128, "int8 cache: rows of 128 codes");
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u; /* the swizzle's alignment */
    const uint32_t s_q = base, s_kv = base + H::kTileBytes;
    const uint32_t s_st = base + (1 + 2 * H::kStages) * H::kTileBytes; /* int8: staged codes */
    const uint32_t bars = s_st + H::staging_bytes(Q8);

    const int tid = (int)threadIdx.x, wg = tid / H::kWgThreads;
    const int qblock = p.causal ? (int)(gridDim.y - 1 - blockIdx.y) : (int)blockIdx.y;
    const int q0 = qblock * H::kBM, n_q = (int)p.n_q;
    const int head = (int)blockIdx.x, kv_head = head / (p.n_heads / p.n_kv_heads);
    const KvExtent ext = kv_extent(p);
    /* the CTA's keys: ranges grow with the row (row_key_range), so first row's lo, last's hi */
    int kv_lo, kv_hi, unused;
    row_key_range(p, ext, q0, &kv_lo, &unused);
    row_key_range(p, ext, min(q0 + H::kBM - 1, n_q - 1), &unused, &kv_hi);
    const int n_tiles = (kv_hi - kv_lo + H::kBN - 1) / H::kBN;

    if (tid == 0) {
        bar_init(bars + 8 * H::q_full, 1);
        /* full: the TMA thread's arrival, or (int8) one per producer warp after its rows */
        const int fills = Q8 ? H::kWgThreads / 32 : 1;
        for (int s = 0; s < H::kStages; s++) {
            bar_init(bars + 8 * H::k_full(s), fills);
            bar_init(bars + 8 * H::v_full(s), fills);
            bar_init(bars + 8 * H::k_empty(s), H::kConsumerWarps);
            bar_init(bars + 8 * H::v_empty(s), H::kConsumerWarps);
            bar_init(bars + 8 * H::k_staged(s), 1);
            bar_init(bars + 8 * H::v_staged(s), 1);
        }
        bar_init_fence();
    }
    __syncthreads();

    /* registers: 24 for the TMA thread's warpgroup, 40 for an int8 producer's conversion;
     * the consumers take the rest of the 64K (128 x 40 + 256 x 232 = 64512) */
    if (wg == 0) {
        if constexpr (Q8) {
            regs_dealloc<40>();
            produce_q8(p, &tm_q, &tm_k, &tm_v, q_order, kv_order, s_q, s_kv, s_st, bars, head,
                       kv_head, q0, kv_lo, n_tiles, ext.n_kv);
        } else {
            regs_dealloc<24>();
            if (tid == 0)
                produce(&tm_q, &tm_k, &tm_v, q_order, kv_order, s_q, s_kv, bars, head, kv_head, q0,
                        kv_lo, n_tiles);
        }
        return;
    }
    regs_alloc<Q8 ? 232 : 240>();

    const int cw = wg - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4, q = lane % 4;
    const int row0 = q0 + 64 * cw + 16 * warp + g; /* this thread's rows: row0, row0 + 8 */
    int lo0, hi0, lo1, hi1;
    row_key_range(p, ext, min(row0, n_q - 1), &lo0, &hi0);
    row_key_range(p, ext, min(row0 + 8, n_q - 1), &lo1, &hi1);
    /* the part of the keys every row of this consumer sees, [in_lo, in_hi): tiles inside it
     * need no mask. Every consumer runs every tile of the CTA (a tile none of its rows sees is
     * all masked, which changes nothing): wgmma in a branch would be serialized by ptxas. */
    int in_lo, in_hi;
    row_key_range(p, ext, min(q0 + 64 * cw, n_q - 1), &unused, &in_hi);
    row_key_range(p, ext, min(q0 + 64 * cw + 63, n_q - 1), &in_lo, &unused);

    Consumer c;
    c.o_init();
    c.scale_log2 = p.scale * 1.4426950408889634f; /* exp(x) = 2^(x log2 e) */
    c.q_rows = s_q + (uint32_t)(64 * cw * H::kRowBytes);
    bar_wait(bars + 8 * H::q_full, 0);
    const auto wait_k = [&](int t) { bar_wait(bars + 8 * H::k_full(H::stage(t)), H::parity(t)); };
    const auto wait_v = [&](int t) { /* and a runtime length's V rows past it zeroed */
                                     bar_wait(bars + 8 * H::v_full(H::stage(t)), H::parity(t));
                                     const int n0 = kv_lo + t * H::kBN;
                                     /* (int8: the producer zeroed them, scale 0) */
                                     if (!Q8 && p.n_past_dev != nullptr && n0 + H::kBN > ext.n_kv)
                                         zero_v_rows(H::v_tile(s_kv, t), ext.n_kv - n0,
                                                     tid % H::kWgThreads, cw);
    };
    const auto release = [&](int bar) {
        __syncwarp();
        if (lane == 0) bar_arrive(bars + 8 * bar);
    };
    float alpha[2];
    const auto softmax = [&](int t) { /* o is rescaled and P packed by the caller */
                                      const int n0 = kv_lo + t * H::kBN;
                                      if (n0 < in_lo || n0 + H::kBN > in_hi)
                                          mask_tile(c.sc, n0, q, lo0, hi0, lo1, hi1);
                                      softmax_exp(c.sc, c.m, c.l, alpha, c.scale_log2);
    };

    if constexpr (MODE == 1) {
        /* each tile in order: S, softmax, P.V, every product waited for at once */
        for (int t = 0; t < n_tiles; t++) {
            wait_k(t);
            wg_fence();
            c.issue_s<D>(H::k_tile(s_kv, t));
            wg_commit();
            wg_wait<0>();
            c.fence_s();
            release(H::k_empty(H::stage(t)));
            softmax(t);
            rescale_o(c.o, alpha);
            pack_p(c.sc, c.pa);
            wait_v(t);
            wg_fence();
            c.issue_pv(H::v_tile(s_kv, t));
            wg_commit();
            wg_wait<0>();
            c.fence_pv();
            release(H::v_empty(H::stage(t)));
        }
    } else {
        /* phase t issues S of tile t and P.V of tile t - 1 as one batch, the two consumers in
         * turn (named barriers kTurn + c): while one computes its softmax, the tensor cores run
         * the other's products. Phase 0 has no P.V and phase n_tiles no S (peeled: no wgmma in
         * a branch). Consumer 0 goes first; each waits for its turn n_tiles + 1 times and
         * hands it over as often (consumer 0 once more at the end, which takes consumer 1's
         * last hand-over). */
        if (cw == 1) named_arrive(H::kTurn, 2 * H::kWgThreads);
        wait_k(0);
        named_sync(H::kTurn + cw, 2 * H::kWgThreads);
        wg_fence();
        c.issue_s<D>(H::k_tile(s_kv, 0));
        wg_commit();
        named_arrive(H::kTurn + 1 - cw, 2 * H::kWgThreads);
        wg_wait<0>();
        c.fence_s();
        release(H::k_empty(0));
        softmax(0);
        rescale_o(c.o, alpha);
        pack_p(c.sc, c.pa);
        for (int t = 1; t < n_tiles; t++) {
            wait_k(t);
            wait_v(t - 1);
            named_sync(H::kTurn + cw, 2 * H::kWgThreads);
            wg_fence();
            c.issue_s<D>(H::k_tile(s_kv, t));
            if constexpr (MODE == 3) wg_commit(); /* S(t) and P.V(t - 1): two groups */
            c.issue_pv(H::v_tile(s_kv, t - 1));
            wg_commit();
            named_arrive(H::kTurn + 1 - cw, 2 * H::kWgThreads);
            if constexpr (MODE == 3) {
                /* the softmax of tile t beside this consumer's P.V(t - 1): it writes only the
                 * S registers (done) and the row statistics; o and P, P.V's registers, are
                 * rescaled and packed once it is done (a wgmma input defined while its stage is
                 * open would make ptxas serialize them) */
                wg_wait<1>();
                c.fence_s();
                release(H::k_empty(H::stage(t)));
                softmax(t);
                wg_wait<0>();
                c.fence_pv();
                release(H::v_empty(H::stage(t - 1)));
            } else {
                wg_wait<0>();
                c.fence_s();
                c.fence_pv();
                release(H::v_empty(H::stage(t - 1)));
                release(H::k_empty(H::stage(t)));
                softmax(t);
            }
            rescale_o(c.o, alpha);
            pack_p(c.sc, c.pa);
        }
        wait_v(n_tiles - 1);
        named_sync(H::kTurn + cw, 2 * H::kWgThreads);
        wg_fence();
        c.issue_pv(H::v_tile(s_kv, n_tiles - 1));
        wg_commit();
        named_arrive(H::kTurn + 1 - cw, 2 * H::kWgThreads);
        wg_wait<0>();
        c.fence_pv();
        release(H::v_empty(H::stage(n_tiles - 1)));
        if (cw == 0) named_sync(H::kTurn, 2 * H::kWgThreads);
    }
    store_rows<D>(p, head, row0, q, c.o, c.l); /* rows past n_q are not stored */
#endif                                         /* VL_HOPPER_DEVICE */
}

#ifdef VL_HOPPER_KERNELS
/* A tensor of `rows` rows of `heads` heads of d columns of bf16 (esz 2) or int8 codes (esz 1),
 * as boxes of 128 bytes of columns x 128 rows of one head in the 128-byte swizzle. Strides in
 * elements. */
MapOrder make_map(vl_cuda_ctx *c, CUtensorMap *map, const void *base, int esz, int d, int heads,
                  int64_t rows, int64_t head_stride, int64_t row_stride) {
    MapOrder order = {head_stride > row_stride};
    const uint64_t dims[3] = {(uint64_t)d, (uint64_t)(order.rows_second ? rows : heads),
                              (uint64_t)(order.rows_second ? heads : rows)};
    const uint64_t strides[2] = {
        (uint64_t)(order.rows_second ? row_stride : head_stride) * (uint64_t)esz,
        (uint64_t)(order.rows_second ? head_stride : row_stride) * (uint64_t)esz};
    const uint32_t box[3] = {(uint32_t)(H::kRowBytes / esz),
                             order.rows_second ? (uint32_t)H::kBN : 1u,
                             order.rows_second ? 1u : (uint32_t)H::kBN};
    vl_cuda_tensor_map(c, map, esz, 3, base, dims, strides, box, 1);
    return order;
}

template <int D, int MODE, bool Q8>
void launch(vl_cuda_ctx *c, const vl_attn_params *p, cudaStream_t stream) {
    CUtensorMap tm_q, tm_k, tm_v;
    const int kv_esz = Q8 ? 1 : 2; /* an int8 cache's codes, or bf16 */
    const MapOrder q_order = make_map(c, &tm_q, p->q, 2, D, p->n_heads, p->n_q, D, p->q_stride);
    const MapOrder kv_order = make_map(c, &tm_k, p->k, kv_esz, D, p->n_kv_heads, p->n_kv,
                                       p->kv_head_stride, p->kv_tok_stride);
    (void)make_map(c, &tm_v, p->v, kv_esz, D, p->n_kv_heads, p->n_kv, p->kv_head_stride,
                   p->kv_tok_stride);
    const void *kernel = (const void *)attn_wgmma_kernel<D, MODE, Q8>;
    const int smem = H::smem_bytes(Q8);
    (void)vl_cuda_ctas_per_sm(c, kernel, H::kThreads, smem); /* the shared-memory opt-in */
    const dim3 grid((unsigned)p->n_heads, (unsigned)((p->n_q + H::kBM - 1) / H::kBM));
    attn_wgmma_kernel<D, MODE, Q8>
        <<<grid, H::kThreads, smem, stream>>>(*p, tm_q, tm_k, tm_v, q_order, kv_order);
    VL_CUDA_LAUNCH_CHECK();
}

template <int D, bool Q8>
void launch_mode(vl_cuda_ctx *c, const vl_attn_params *p, int mode, cudaStream_t stream) {
    mode == 3   ? launch<D, 3, Q8>(c, p, stream)
    : mode == 2 ? launch<D, 2, Q8>(c, p, stream)
                : launch<D, 1, Q8>(c, p, stream);
}
#endif /* VL_HOPPER_KERNELS */

} // namespace vl_attn_wgmma

using namespace vl_attn_wgmma;

int vl_attn_wgmma_takes(const vl_cuda_ctx *c, const vl_attn_params *p) {
#ifdef VL_HOPPER_KERNELS
    if (!c->cfg.attn_prefill_wgmma || c->cc_major != 9 || c->cc_minor != 0) return 0;
    if (p->head_dim != 128 && p->head_dim != 80) return 0;
    if (p->n_q < 2 || p->batch || p->pages.table != NULL) return 0;
    /* an int8 cache: rows of 128 codes (the text layers' head dim) */
    if (p->k_scale != NULL && p->head_dim != 128) return 0;
    /* TMA: 16-byte aligned bases and strides (the fast path's rows) */
    return vl_attn_fast_rows(p);
#else
    (void)c;
    (void)p;
    return 0;
#endif
}

int vl_attn_prefill_wgmma(vl_cuda_ctx *c, const vl_attn_params *p, cudaStream_t stream) {
    if (!vl_attn_wgmma_takes(c, p)) return 0;
#ifdef VL_HOPPER_KERNELS
    /* 3 for causal calls only (file comment: measured slower on the vision blocks) */
    const int mode = c->cfg.attn_prefill_wgmma == 3 && !p->causal ? 2 : c->cfg.attn_prefill_wgmma;
    if (p->k_scale != NULL)
        launch_mode<128, true>(c, p, mode, stream);
    else if (p->head_dim == 128)
        launch_mode<128, false>(c, p, mode, stream);
    else
        launch_mode<80, false>(c, p, mode, stream);
#else
    (void)stream;
#endif
    return 1;
}
