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
 * Takes (vl_attn_prefill_wgmma): a compute capability 9.0 device in a build with sm_90a code,
 * attn_prefill_wgmma > 0, head dim 80 or 128, the fast path's alignment, a bf16 cache in plain
 * rows (no int8 scales, no pages, no batch). Everything else goes to cuda_attention_prefill.cu.
 * Leaves out: the int8 cache and paged pools read directly (the engine dequantizes / gathers a
 * layer first), a persistent grid, TMA stores of the output, and FlashAttention-3's overlap inside
 * one consumer (its softmax of tile t beside its own P.V of tile t - 1: tried, ptxas serialized
 * its wgmmas, C7513, and it ran 20% slower; bench/RESULTS.md "Tried and not kept").
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
    static constexpr int kBars = 1 + 4 * kStages;               /* q; k/v full; k/v empty */
    static constexpr int kSmem = 1024 /* alignment */ + (1 + 2 * kStages) * kTileBytes + 8 * kBars;
    static constexpr int kConsumerWarps = 2 * kWgThreads / 32;
    /* barrier indices */
    static constexpr int q_full = 0;
    static constexpr int kTurn = 3; /* named barriers 3, 4: the consumers' turns (pingpong) */
    __device__ static constexpr int k_full(int s) { return 1 + s; }
    __device__ static constexpr int v_full(int s) { return 1 + kStages + s; }
    __device__ static constexpr int k_empty(int s) { return 1 + 2 * kStages + s; }
    __device__ static constexpr int v_empty(int s) { return 1 + 3 * kStages + s; }
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
};
static_assert(H::kBM == H::kBN, "Q and K/V tiles share the tile size");

/* A tensor map's coordinate order: (column, head, row), or (column, row, head) when the head
 * stride is the larger (a head-major cache), so that strides grow with the dimension. */
struct MapOrder {
    int rows_second;
};

#ifdef VL_HOPPER_DEVICE
using namespace vl_hopper;

__device__ __forceinline__ void tma_tile(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                         MapOrder order, int head, int row0) {
#pragma unroll
    for (int a = 0; a < H::kAtoms; a++) {
        if (order.rows_second)
            tma_load_3d(dst + a * H::kBN * H::kRowBytes, map, bar, a * 64, row0, head);
        else
            tma_load_3d(dst + a * H::kBN * H::kRowBytes, map, bar, a * 64, head, row0);
    }
}

/* One thread issues every load: Q once, then K(t) and V(t) as their stages free up. */
__device__ __forceinline__ void produce(const CUtensorMap *tm_q, const CUtensorMap *tm_k,
                                        const CUtensorMap *tm_v, MapOrder q_order,
                                        MapOrder kv_order, uint32_t s_q, uint32_t s_kv,
                                        uint32_t bars, int head, int kv_head, int q0, int kv_lo,
                                        int n_tiles) {
    tma_prefetch_map(tm_q);
    tma_prefetch_map(tm_k);
    tma_prefetch_map(tm_v);
    bar_arrive_expect(bars + 8 * H::q_full, H::kTileBytes);
    tma_tile(s_q, tm_q, bars + 8 * H::q_full, q_order, head, q0);
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
            wgmma_ss_m64n128(sc, desc_sw128(q_rows + off, 16, 1024),
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

template <int D, int MODE>
__global__ void __launch_bounds__(H::kThreads, 1)
    attn_wgmma_kernel(const __grid_constant__ vl_attn_params p,
                      const __grid_constant__ CUtensorMap tm_q,
                      const __grid_constant__ CUtensorMap tm_k,
                      const __grid_constant__ CUtensorMap tm_v, MapOrder q_order,
                      MapOrder kv_order) {
#ifdef VL_HOPPER_DEVICE
    static_assert(D % 16 == 0 && D > 64 && D <= 128, "two column blocks of 64");
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u; /* the swizzle's alignment */
    const uint32_t s_q = base, s_kv = base + H::kTileBytes;
    const uint32_t bars = base + (1 + 2 * H::kStages) * H::kTileBytes;

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
        for (int s = 0; s < H::kStages; s++) {
            bar_init(bars + 8 * H::k_full(s), 1);
            bar_init(bars + 8 * H::v_full(s), 1);
            bar_init(bars + 8 * H::k_empty(s), H::kConsumerWarps);
            bar_init(bars + 8 * H::v_empty(s), H::kConsumerWarps);
        }
        bar_init_fence();
    }
    __syncthreads();

    if (wg == 0) {
        regs_dealloc<24>();
        if (tid == 0)
            produce(&tm_q, &tm_k, &tm_v, q_order, kv_order, s_q, s_kv, bars, head, kv_head, q0,
                    kv_lo, n_tiles);
        return;
    }
    regs_alloc<240>();

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
                                     if (p.n_past_dev != nullptr && n0 + H::kBN > ext.n_kv)
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
typedef CUresult (*EncodeTiled)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled from the driver (through the runtime: no link to libcuda). */
EncodeTiled encode_tiled(vl_cuda_ctx *c) {
    if (c->tensor_map_encode == NULL) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
        VL_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                       cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || fn == NULL)
            vl_cuda_fatal("cudaGetDriverEntryPointByVersion", __FILE__, __LINE__,
                          "the driver has no cuTensorMapEncodeTiled");
        c->tensor_map_encode = fn;
    }
    return (EncodeTiled)c->tensor_map_encode;
}

/* A bf16 tensor of `rows` rows of `heads` heads of d columns, as boxes of 64 columns x 128 rows
 * of one head in the 128-byte swizzle. Strides in elements. */
MapOrder make_map(vl_cuda_ctx *c, CUtensorMap *map, const void *base, int d, int heads,
                  int64_t rows, int64_t head_stride, int64_t row_stride) {
    MapOrder order = {head_stride > row_stride};
    const cuuint64_t dims[3] = {(cuuint64_t)d, (cuuint64_t)(order.rows_second ? rows : heads),
                                (cuuint64_t)(order.rows_second ? heads : rows)};
    const cuuint64_t strides[2] = {(cuuint64_t)(order.rows_second ? row_stride : head_stride) * 2,
                                   (cuuint64_t)(order.rows_second ? head_stride : row_stride) * 2};
    const cuuint32_t box[3] = {64, order.rows_second ? (cuuint32_t)H::kBN : 1u,
                               order.rows_second ? 1u : (cuuint32_t)H::kBN};
    const cuuint32_t elem_strides[3] = {1, 1, 1};
    const CUresult r = encode_tiled(c)(
        map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void *>(base), dims, strides, box,
        elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "CUresult %d (d %d, heads %d, rows %lld)", (int)r, d, heads,
                 (long long)rows);
        vl_cuda_fatal("cuTensorMapEncodeTiled", __FILE__, __LINE__, what);
    }
    return order;
}

template <int D, int MODE>
void launch(vl_cuda_ctx *c, const vl_attn_params *p, cudaStream_t stream) {
    CUtensorMap tm_q, tm_k, tm_v;
    const MapOrder q_order = make_map(c, &tm_q, p->q, D, p->n_heads, p->n_q, D, p->q_stride);
    const MapOrder kv_order =
        make_map(c, &tm_k, p->k, D, p->n_kv_heads, p->n_kv, p->kv_head_stride, p->kv_tok_stride);
    (void)make_map(c, &tm_v, p->v, D, p->n_kv_heads, p->n_kv, p->kv_head_stride, p->kv_tok_stride);
    const void *kernel = (const void *)attn_wgmma_kernel<D, MODE>;
    (void)vl_cuda_ctas_per_sm(c, kernel, H::kThreads, H::kSmem); /* the shared-memory opt-in */
    const dim3 grid((unsigned)p->n_heads, (unsigned)((p->n_q + H::kBM - 1) / H::kBM));
    attn_wgmma_kernel<D, MODE>
        <<<grid, H::kThreads, H::kSmem, stream>>>(*p, tm_q, tm_k, tm_v, q_order, kv_order);
    VL_CUDA_LAUNCH_CHECK();
}
#endif /* VL_HOPPER_KERNELS */

} // namespace vl_attn_wgmma

using namespace vl_attn_wgmma;

int vl_attn_wgmma_takes(const vl_cuda_ctx *c, const vl_attn_params *p) {
#ifdef VL_HOPPER_KERNELS
    if (!c->cfg.attn_prefill_wgmma || c->cc_major != 9 || c->cc_minor != 0) return 0;
    if (p->head_dim != 128 && p->head_dim != 80) return 0;
    if (p->n_q < 2 || p->batch || p->k_scale != NULL || p->pages.table != NULL) return 0;
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
    if (p->head_dim == 128)
        mode == 3   ? launch<128, 3>(c, p, stream)
        : mode == 2 ? launch<128, 2>(c, p, stream)
                    : launch<128, 1>(c, p, stream);
    else
        mode == 3   ? launch<80, 3>(c, p, stream)
        : mode == 2 ? launch<80, 2>(c, p, stream)
                    : launch<80, 1>(c, p, stream);
#else
    (void)stream;
#endif
    return 1;
}
