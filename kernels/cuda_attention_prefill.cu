/* cuda_attention_prefill.cu: flash attention for many queries (prompt chunks, vision blocks): bf16
 * q/k/v/o (k/v also an int8 cache, below), tensor cores (mma.sync m16n8k16), fp32 online
 * softmax, O(n) memory.
 *
 * Version 1 (FlashAttention-2 schedule, written from the paper's algorithm):
 *   - CTA = 4 warps over kBM = 64 * MT query rows of one head (grid: heads x query blocks);
 *     warp w owns the 16 * MT consecutive rows w * 16 * MT ..; the kv head is head / group, so
 *     grouped heads read K/V from the cache as it is, without expansion.
 *   - Keys stream through shared memory in tiles of kBN = 64 with cp.async, one K and one V
 *     buffer: V(t) lands while the warps compute S = Q K(t)^T and the softmax, K(t + 1) while
 *     they compute O += P V(t). Every load hides behind a compute phase at half the shared
 *     memory of a full double buffer, so the CTA fits the 99 KB of sm_86/sm_89 as well.
 *   - S stays in registers: the m16n8 accumulators of S, rounded to bf16, are exactly the A
 *     fragments of P for the P.V product (FlashAttention-2's register reuse); Q and K come in
 *     through ldmatrix, V through ldmatrix.trans.
 *   - Masks: every row has a visible key range [lo, hi) (its segment, cut at q_pos0 + i when
 *     causal). The CTA visits only the union of its rows' ranges; a warp skips a tile none of its
 *     rows sees, and applies the per-element mask only on tiles that cut through some row's
 *     range. Rows past n_q and keys past the union are zero-filled and never stored.
 *   - Causal grids hand out the longest query blocks first, for every head (blocks are
 *     dispatched x fastest), so the short ones fill the tail.
 *   - Head dims: every one up to 128 (cuda_attention_mma.cuh). Fast path: a multiple of 8 with
 * 16-byte aligned rows; one not a multiple of 16 (the tiny test models' 24, 40) runs its MMAs over
 *     D + 8 columns whose padding is zeros in shared memory. Element path (any other head dim,
 *     e.g. tiny-odd's vision 20, or rows not 16-byte aligned): tiles of element_dim(D) columns
 *     filled by element loads, zeros past D; 64-row CTAs only. Its loads are synchronous, so
 *     they do not overlap the math: correct at any size, fast only on the fast path.
 *   - The cache length may be read at run time (n_past_dev, CUDA-graph replays): the grid depends
 *     on n_q only, and the key ranges come from kv_extent, so the result has the same bits as a
 *     call with that length written in the params.
 *   - int8 KV cache (--kv int8, p.k_scale set: the Q8 kernels; causal chunks without segments or
 *     pages): the tiles are read from the cache as it is, with no bf16 copy of the layer first.
 *     Each element enters sK / sV as bf16_rn(code * scale) in fp32, the expression of the
 *     engine's dequantized copy (kv_gather's dequant8), so the output has the bits of the bf16
 *     kernel over that copy. The engine reads the codes directly only when that copy does not
 *     fit (engine/pipeline.c): every query block converts the codes again (S22, H100: 256
 *     against 273 TFLOP/s for a bf16 cache). Fast path: a tile's codes (16-byte cp.async
 *     copies, 8-byte where D % 16 != 0) and row scales (4-byte copies) land in an int8 stage
 *     after sV, kBN * (D + 4) bytes; after the wait all threads convert it (8 codes, one 16-byte
 *     store each), then a barrier. The overlap stays (V(t) lands during S(t), K(t + 1) during
 *     P.V(t)); one stage serves both, each tile converted before the next is issued: 76.25 KB a
 *     CTA for MT 2 at D 128, still two CTAs on an A100's 164 KB (two stages would not be).
 *     Element path: element loads converted on the way. Rows past the range are zeros; their
 *     codes and scales are never read.
 * Leaves out: Hopper wgmma/TMA/warp specialization (cuda_attention_wgmma.cu takes head dims 80
 * and 128 on sm_90), split-KV for short query blocks over long caches (decode has its own
 * kernel), dropout, sliding windows, ALiBi, fp16 inputs, int8 caches in pages (kv_gather
 * dequantizes those first).
 */
#include "kernels/cuda_attention_mma.cuh"

#include <limits.h>

using namespace vl_attn;

namespace {

/* DS: the columns a tile row holds: the head dim on the fast path, element_dim(head dim) on the
 * element path (ELEM), where the real head dim is p.head_dim. STAGE: the int8 cache's fast path,
 * whose K and V rows land in an int8 stage (kBN rows of DS codes, then their kBN fp32 scales)
 * before they are converted into the bf16 tiles. */
template <int DS, int MT, bool STAGE = false> struct Prefill {
    static constexpr int kRowsPerWarp = 16 * MT;
    static constexpr int kBM = kWarps * kRowsPerWarp; /* query rows per CTA */
    static constexpr int kBN = 64;                    /* keys per tile */
    static constexpr int kDP = padded_dim(DS);        /* head dim the MMAs run over */
    static constexpr int kLD = kDP + 8;               /* shared row stride, elements */
    static constexpr int kStage = STAGE ? kBN * DS + kBN * (int)sizeof(float) : 0; /* bytes */
    static constexpr int kSmem = (kBM + 2 * kBN) * kLD * (int)sizeof(bf16) + kStage;
    static_assert(DS % 8 == 0 && DS <= kMaxHeadDim, "tile rows: a multiple of 8, at most 128");
    static_assert(kDP == DS || kDP == DS + 8, "one 16-byte pad chunk at most");
    static_assert(kBN <= kThreads, "a thread copies each scale");
    static_assert(kSmem <= 99 * 1024, "a CTA must fit the 99 KB of sm_86 and sm_89");
};

/* The fast path of load_tile: 16-byte cp.async copies. */
template <int D, int ROWS, int LD>
__device__ __forceinline__ void load_tile_async(bf16 *s, const bf16 *g, int64_t stride, int row0,
                                                int row_end) {
    constexpr int kChunks = D / 8; /* 16-byte pieces per row */
    constexpr int kTotal = ROWS * kChunks;
    const uint32_t base = smem_u32(s);
    if constexpr (kThreads % kChunks == 0 && ROWS % (kThreads / kChunks) == 0) {
        /* each pass covers whole rows: one pointer, advanced by a fixed number of rows */
        constexpr int kRowsPerPass = kThreads / kChunks;
        const int r = (int)threadIdx.x / kChunks, col = ((int)threadIdx.x % kChunks) * 8;
        const bf16 *src = g + (int64_t)(row0 + r) * stride + col;
        const int64_t step = (int64_t)kRowsPerPass * stride;
#pragma unroll
        for (int it = 0; it < ROWS / kRowsPerPass; it++) {
            const bool valid = row0 + r + it * kRowsPerPass < row_end;
            cp_async16(base + (uint32_t)(((r + it * kRowsPerPass) * LD + col) * 2), valid ? src : g,
                       valid);
            src += step;
        }
    } else {
#pragma unroll
        for (int it = 0; it < (kTotal + kThreads - 1) / kThreads; it++) {
            const int c = it * kThreads + (int)threadIdx.x;
            if (kTotal % kThreads == 0 || c < kTotal) {
                const int r = c / kChunks, col = (c % kChunks) * 8;
                const bool valid = row0 + r < row_end;
                const bf16 *src = valid ? g + (int64_t)(row0 + r) * stride + col : g;
                cp_async16(base + (uint32_t)((r * LD + col) * 2), src, valid);
            }
        }
    }
}

/* Rows [row0, row0 + ROWS) of a global matrix (row stride `stride`) into a shared tile with row
 * stride LD; rows at or past row_end are zero-filled. All threads take part.
 * Fast path: D = DS columns by cp.async; columns from D to LD are left alone (the padding,
 * zeroed once by the kernel). Element path (ELEM): d real columns by element loads, then zeros
 * up to DS. */
template <int D, int ROWS, int LD, bool ELEM>
__device__ __forceinline__ void load_tile(bf16 *s, const bf16 *g, int64_t stride, int row0,
                                          int row_end, int d) {
    if constexpr (ELEM) {
        load_rows_elems<uint16_t, D, LD>(reinterpret_cast<uint16_t *>(s),
                                         reinterpret_cast<const uint16_t *>(g), stride, row0, ROWS,
                                         row_end, d, (int)threadIdx.x, kThreads);
    } else {
        load_tile_async<D, ROWS, LD>(s, g, stride, row0, row_end);
    }
}

/* ---- the int8 cache (Q8): tiles of bf16(code * scale) ---- */

/* The int8 fast path splits a stage into pieces, n = D / PIECE per row, for its copies (PIECE:
 * the cp.async width) and its conversion (PIECE 8): thread t takes piece t % n of rows t / n,
 * t / n + kRowsPerPass, ..., so each pass's addresses are the last ones plus constants. (A split
 * by piece index, as load_tile_async's, divides per piece; where n does not divide 128, as at
 * head dims 104 and 120, the compiler keeps those addresses over the whole loop, registers MT 2
 * does not have.) The threads past kRowsPerPass * n idle. */
template <int D, int PIECE, int ROWS> struct StageSplit {
    static constexpr int kPieces = D / PIECE, kRowsPerPass = kThreads / kPieces;
    static constexpr int kPasses = (ROWS + kRowsPerPass - 1) / kRowsPerPass;
    static_assert(kPieces * PIECE == D, "whole pieces per row");
    int r, col; /* this thread's first row and its column */
    __device__ __forceinline__ StageSplit()
        : r((int)threadIdx.x / kPieces), col((int)threadIdx.x % kPieces * PIECE) {}
    __device__ __forceinline__ bool idle() const {
        return kThreads % kPieces != 0 && r >= kRowsPerPass;
    }
    /* row r + it * kRowsPerPass exists (only the last pass may run past ROWS) */
    __device__ __forceinline__ bool has(int it) const {
        return (it + 1) * kRowsPerPass <= ROWS || r + it * kRowsPerPass < ROWS;
    }
};

/* The fast path: rows [row0, row0 + ROWS) of D codes (row stride `stride` bytes) and their scales
 * sc[row0 ..] into the stage st (Prefill::kStage: the codes D bytes apart, then ROWS floats);
 * rows at or past row_end become zero codes and zero scales, read from nowhere. */
template <int D, int ROWS>
__device__ __forceinline__ void load_stage_q8(unsigned char *st, const int8_t *g, const float *sc,
                                              int64_t stride, int row0, int row_end) {
    constexpr int kCB = D % 16 == 0 ? 16 : 8; /* bytes per copy: vl_attn_fast_rows' alignment */
    using S = StageSplit<D, kCB, ROWS>;
    const int t = (int)threadIdx.x;
    if (t < ROWS) {
        const bool valid = row0 + t < row_end;
        cp_async_small<4>(smem_u32(st + ROWS * D + t * 4), valid ? sc + row0 + t : sc, valid);
    }
    const S at;
    if (at.idle()) return;
    /* pass it reads a row of the range iff it * kRowsPerPass < left */
    const int left = row_end - row0 - at.r;
    const int8_t *src = g + (int64_t)(row0 + at.r) * stride + at.col;
    const int64_t step = (int64_t)S::kRowsPerPass * stride;
    const uint32_t dst = smem_u32(st + at.r * D + at.col);
#pragma unroll
    for (int it = 0; it < S::kPasses; it++) {
        if (at.has(it)) {
            const bool valid = it * S::kRowsPerPass < left;
            const uint32_t to = dst + (uint32_t)(it * S::kRowsPerPass * D);
            if constexpr (kCB == 16)
                cp_async16(to, valid ? src : g, valid);
            else
                cp_async_small<8>(to, valid ? src : g, valid);
        }
        src += step;
    }
}

/* The stage of load_stage_q8 (landed, visible to every thread) -> the D real columns of the bf16
 * tile s (rows LD elements apart): 8 codes a thread at a time, one 16-byte store. */
template <int D, int ROWS, int LD>
__device__ __forceinline__ void convert_stage(bf16 *s, const unsigned char *st) {
    using S = StageSplit<D, 8, ROWS>;
    const S at;
    if (at.idle()) return;
    const float *sc = reinterpret_cast<const float *>(st + ROWS * D) + at.r;
    const unsigned char *from = st + at.r * D + at.col;
    bf16 *to = s + at.r * LD + at.col;
#pragma unroll
    for (int it = 0; it < S::kPasses; it++) {
        if (at.has(it)) {
            const int dr = it * S::kRowsPerPass;
            const uint2 w = *reinterpret_cast<const uint2 *>(from + dr * D);
            const uint2 lo = vl_int8x4_scaled_to_bf16x4(w.x, sc[dr]),
                        hi = vl_int8x4_scaled_to_bf16x4(w.y, sc[dr]);
            *reinterpret_cast<uint4 *>(to + dr * LD) = make_uint4(lo.x, lo.y, hi.x, hi.y);
        }
    }
}

/* The element path: rows [row0, row0 + ROWS) straight into the bf16 tile, element (r, c) =
 * bf16(code * scale) for c < d and row0 + r < row_end, else 0 (neither code nor scale read). */
template <int DS, int ROWS, int LD>
__device__ __forceinline__ void load_tile_q8_elems(bf16 *s, const int8_t *g, const float *sc,
                                                   int64_t stride, int row0, int row_end, int d) {
    for (int e = (int)threadIdx.x; e < ROWS * DS; e += kThreads) {
        const int r = e / DS, c = e % DS, t = row0 + r;
        bf16 x = __ushort_as_bfloat16((unsigned short)0);
        if (c < d && t < row_end)
            x = __float2bfloat16_rn((float)g[(int64_t)t * stride + c] * sc[t]);
        s[r * LD + c] = x;
    }
}

/* The stage (kStaged): the bytes right after sV. Formed at each use: a variable holding it, even
 * unused there, changed the bf16 kernels' PTX. */
__device__ __forceinline__ unsigned char *stage_after(bf16 *sV, int tile_elems) {
    return reinterpret_cast<unsigned char *>(sV + tile_elems);
}

/* Rows [row0, row0 + kBN) of K (V: of V) (from row_end on: zeros) towards the tile s (sK, or sV
 * when V). bf16: load_tile from kv (the kv head's rows). int8 element path: straight into s.
 * int8 fast path: into the stage, which convert_stage turns into s once it has landed. The int8
 * pointers come from p and the kv head, read from shared memory (s_kv_head) at each load:
 * pointers kept over the kernel's loop cost registers that MT 2 at wide head dims lacks. */
template <int DS, int LD, bool ELEM, bool Q8, bool V>
__device__ __forceinline__ void load_kv(bf16 *s, const vl_attn_params &p, const bf16 *kv,
                                        const int *s_kv_head, int row0, int row_end, int d) {
    constexpr int kBN = Prefill<DS, 1>::kBN;
    if constexpr (Q8) {
        const int kv_head = *s_kv_head;
        const int8_t *g =
            static_cast<const int8_t *>(V ? p.v : p.k) + (int64_t)kv_head * p.kv_head_stride;
        const float *sc = (V ? p.v_scale : p.k_scale) + (int64_t)kv_head * p.kv_scale_head_stride;
        if constexpr (ELEM)
            load_tile_q8_elems<DS, kBN, LD>(s, g, sc, p.kv_tok_stride, row0, row_end, d);
        else /* sK is followed by sV */
            load_stage_q8<DS, kBN>(stage_after(V ? s : s + kBN * LD, kBN * LD), g, sc,
                                   p.kv_tok_stride, row0, row_end);
    } else {
        load_tile<DS, kBN, LD, ELEM>(s, kv, p.kv_tok_stride, row0, row_end, d);
    }
}

template <int DS, int MT, bool ELEM, bool Q8>
__global__ void __launch_bounds__(kThreads) attn_prefill_kernel(const vl_attn_params p) {
    constexpr bool kStaged = Q8 && !ELEM; /* the int8 fast path: loads go through the stage */
    using C = Prefill<DS, MT, kStaged>;
    constexpr int kBN = C::kBN, kLD = C::kLD, DP = C::kDP;
    const int D = ELEM ? p.head_dim : DS; /* the real head dim */
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem); /* [kBM][kLD], later the output staging */
    bf16 *sK = sQ + C::kBM * kLD;              /* [kBN][kLD] */
    bf16 *sV = sK + kBN * kLD;                 /* [kBN][kLD] */
    __shared__ int s_lo[C::kBM], s_hi[C::kBM]; /* key range of each query row */
    __shared__ int s_range[2][kWarps];
    __shared__ int s_kv_head; /* Q8: see load_kv */

    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int gid = lane / 4, tig = lane % 4;
    const int qblock = p.causal ? (int)(gridDim.y - 1 - blockIdx.y) : (int)blockIdx.y;
    const int q0 = qblock * C::kBM, n_q = (int)p.n_q;
    const int head = (int)blockIdx.x, kv_head = head / (p.n_heads / p.n_kv_heads);
    const bf16 *q = static_cast<const bf16 *>(p.q) + (int64_t)head * D;
    /* the kv head's rows of a bf16 cache (an int8 one: load_kv) */
    const bf16 *k = static_cast<const bf16 *>(p.k) + (int64_t)kv_head * p.kv_head_stride;
    const bf16 *v = static_cast<const bf16 *>(p.v) + (int64_t)kv_head * p.kv_head_stride;
    const int warp_row0 = warp * C::kRowsPerWarp;
    const KvExtent ext = kv_extent(p);

    if constexpr (DP != DS) {
        /* the padding columns of every Q, K and V row: zeros, so the MMAs over DP add nothing;
         * the cp.asyncs never write them, and the first barrier below publishes them */
        for (int r = (int)threadIdx.x; r < C::kBM + 2 * kBN; r += kThreads)
            *reinterpret_cast<uint4 *>(sQ + r * kLD + DS) = make_uint4(0u, 0u, 0u, 0u);
    }
    load_tile<DS, C::kBM, kLD, ELEM>(sQ, q, p.q_stride, q0, n_q, D);

    /* This thread holds rows warp_row0 + 16 mt + gid + 8 half. A row past n_q borrows the range
     * of row n_q - 1, so it neither widens the key range nor forces masks. The warp keeps the
     * hull [w_lo, w_hi) of its rows' ranges (tiles outside it are skipped) and the part
     * [w_in_lo, w_in_hi) every row sees (tiles inside it need no mask); the ranges themselves
     * stay in shared memory, read on masked tiles only (registers are the limit here). */
    int w_lo = INT_MAX, w_hi = 0, w_in_lo = 0, w_in_hi = INT_MAX;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int r = warp_row0 + 16 * mt + gid + 8 * half;
            int lo, hi;
            row_key_range(p, ext, min(q0 + r, n_q - 1), &lo, &hi);
            if (tig == 0) s_lo[r] = lo, s_hi[r] = hi;
            w_lo = min(w_lo, lo), w_hi = max(w_hi, hi);
            w_in_lo = max(w_in_lo, lo), w_in_hi = min(w_in_hi, hi);
        }
    w_lo = __reduce_min_sync(0xffffffffu, w_lo);
    w_hi = __reduce_max_sync(0xffffffffu, w_hi);
    w_in_lo = __reduce_max_sync(0xffffffffu, w_in_lo);
    w_in_hi = __reduce_min_sync(0xffffffffu, w_in_hi);
    if (lane == 0) s_range[0][warp] = w_lo, s_range[1][warp] = w_hi;
    if (Q8 && threadIdx.x == 0) s_kv_head = kv_head;
    __syncthreads();
    int kv_lo = INT_MAX, kv_hi = 0;
#pragma unroll
    for (int w = 0; w < kWarps; w++)
        kv_lo = min(kv_lo, s_range[0][w]), kv_hi = max(kv_hi, s_range[1][w]);
    const int n_tiles = (kv_hi - kv_lo + kBN - 1) / kBN;

    load_kv<DS, kLD, ELEM, Q8, false>(sK, p, k, &s_kv_head, kv_lo, kv_hi, D);
    cp_async_commit(); /* group: Q and K(0) */

    float o[MT][DP / 8][4];
    float m[MT][2], l[MT][2]; /* running raw max of q.k and thread-partial sum of exp */
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int dt = 0; dt < DP / 8; dt++)
            o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.f;
    }
    const float scale_log2 = p.scale * 1.4426950408889634f; /* exp(x) = 2^(x log2 e) */
    const uint32_t q_base = smem_u32(sQ), k_base = smem_u32(sK), v_base = smem_u32(sV);
    /* ldmatrix row addresses of this lane (see cuda_attention_mma.cuh for the fragment layouts) */
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;
    const int b_row = (lane & 7) + (lane >> 4) * 8, b_col = ((lane >> 3) & 1) * 8;

    for (int tile = 0; tile < n_tiles; tile++) {
        const int n0 = kv_lo + tile * kBN;
        cp_async_wait<0>();
        __syncthreads(); /* K(tile) (and Q) landed; every warp is done reading V(tile - 1) */
        if constexpr (kStaged) {
            convert_stage<DS, kBN, kLD>(sK, stage_after(sV, kBN * kLD));
            __syncthreads(); /* sK is whole; the stage is free */
        }
        load_kv<DS, kLD, ELEM, Q8, true>(sV, p, v, &s_kv_head, n0, kv_hi, D);
        cp_async_commit();

        const bool active = w_lo < n0 + kBN && w_hi > n0; /* warp-uniform */
        uint32_t pa[MT][kBN / 16][4];                     /* P as A fragments */
        if (active) {
            float s[MT][kBN / 8][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < kBN / 8; nt++)
                    s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < DP / 16; kk++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldmatrix_x4(a[mt], q_base + (uint32_t)(((warp_row0 + 16 * mt + a_row) * kLD +
                                                            kk * 16 + a_col) *
                                                           2));
#pragma unroll
                for (int np = 0; np < kBN / 16; np++) {
                    uint32_t b[4];
                    ldmatrix_x4(b, k_base +
                                       (uint32_t)(((np * 16 + b_row) * kLD + kk * 16 + b_col) * 2));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        vl_mma_bf16(s[mt][2 * np], a[mt], b[0], b[1]);
                        vl_mma_bf16(s[mt][2 * np + 1], a[mt], b[2], b[3]);
                    }
                }
            }

            if (n0 < w_in_lo || n0 + kBN > w_in_hi) { /* the tile cuts some row's range */
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int half = 0; half < 2; half++) {
                        const int r = warp_row0 + 16 * mt + gid + 8 * half;
                        const int lo = s_lo[r], hi = s_hi[r];
#pragma unroll
                        for (int nt = 0; nt < kBN / 8; nt++)
#pragma unroll
                            for (int e = 0; e < 2; e++) {
                                const int key = n0 + nt * 8 + 2 * tig + e;
                                if (key < lo || key >= hi) s[mt][nt][2 * half + e] = -INFINITY;
                            }
                    }
            }

            /* online softmax: new running max, rescale what was accumulated, exponentiate */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    float mx = m[mt][half];
#pragma unroll
                    for (int nt = 0; nt < kBN / 8; nt++)
                        mx = fmaxf(mx, fmaxf(s[mt][nt][2 * half], s[mt][nt][2 * half + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)); /* the quad shares a row */
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    /* a row that has seen no key yet keeps max -inf: subtract 0, not -inf */
                    const float base = mx == -INFINITY ? 0.f : mx * scale_log2;
                    const float alpha = exp2_approx(m[mt][half] * scale_log2 - base);
                    m[mt][half] = mx;
#pragma unroll
                    for (int dt = 0; dt < DP / 8; dt++) {
                        o[mt][dt][2 * half] *= alpha;
                        o[mt][dt][2 * half + 1] *= alpha;
                    }
                    float sum = 0.f;
#pragma unroll
                    for (int nt = 0; nt < kBN / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float pe =
                                exp2_approx(fmaf(s[mt][nt][2 * half + e], scale_log2, -base));
                            s[mt][nt][2 * half + e] = pe;
                            sum += pe;
                        }
                    l[mt][half] = l[mt][half] * alpha + sum;
                }
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int kk = 0; kk < kBN / 16; kk++) {
                    pa[mt][kk][0] = vl_pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][kk][1] = vl_pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][kk][2] = vl_pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][kk][3] = vl_pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
        }

        cp_async_wait<0>();
        __syncthreads(); /* V(tile) landed; every warp is done reading K(tile) */
        if constexpr (kStaged) {
            convert_stage<DS, kBN, kLD>(sV, stage_after(sV, kBN * kLD));
            __syncthreads(); /* sV is whole; the stage is free */
        }
        if (tile + 1 < n_tiles) {
            load_kv<DS, kLD, ELEM, Q8, false>(sK, p, k, &s_kv_head, n0 + kBN, kv_hi, D);
            cp_async_commit();
        }
        if (active) {
#pragma unroll
            for (int kk = 0; kk < kBN / 16; kk++)
#pragma unroll
                for (int dp = 0; dp < DP / 16; dp++) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(
                        b, v_base + (uint32_t)(((kk * 16 + a_row) * kLD + dp * 16 + a_col) * 2));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        vl_mma_bf16(o[mt][2 * dp], pa[mt][kk], b[0], b[1]);
                        vl_mma_bf16(o[mt][2 * dp + 1], pa[mt][kk], b[2], b[3]);
                    }
                }
        }
    }
    cp_async_wait<0>(); /* nothing may still be landing in sQ */

    /* o / l rounded to bf16, staged in this warp's own Q rows (no other warp reads them), then
     * its D real columns written with 16-byte stores */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            float sum = l[mt][half];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = sum > 0.f ? 1.f / sum : 0.f;
            bf16 *row = sQ + (warp_row0 + 16 * mt + gid + 8 * half) * kLD + 2 * tig;
#pragma unroll
            for (int dt = 0; dt < DP / 8; dt++)
                *reinterpret_cast<uint32_t *>(row + dt * 8) =
                    vl_pack_bf16x2(o[mt][dt][2 * half] * inv, o[mt][dt][2 * half + 1] * inv);
        }
    __syncwarp();
    bf16 *out = static_cast<bf16 *>(p.o) + (int64_t)head * D;
    if constexpr (ELEM) { /* the D real columns, one element at a time */
        for (int c = lane; c < C::kRowsPerWarp * DS; c += 32) {
            const int r = c / DS, col = c % DS, i = q0 + warp_row0 + r;
            if (i < n_q && col < D)
                out[(int64_t)i * p.o_stride + col] = sQ[(warp_row0 + r) * kLD + col];
        }
    } else { /* 16-byte stores */
        constexpr int kChunks = DS / 8;
#pragma unroll
        for (int c = lane; c < C::kRowsPerWarp * kChunks; c += 32) {
            const int r = c / kChunks, col = (c % kChunks) * 8, i = q0 + warp_row0 + r;
            if (i < n_q)
                *reinterpret_cast<uint4 *>(out + (int64_t)i * p.o_stride + col) =
                    *reinterpret_cast<const uint4 *>(sQ + (warp_row0 + r) * kLD + col);
        }
    }
}

template <int DS, int MT, bool ELEM, bool Q8>
void launch(vl_cuda_ctx *c, const vl_attn_params *p, cudaStream_t stream) {
    using C = Prefill<DS, MT, Q8 && !ELEM>;
    /* above 48 KB a kernel must opt in to dynamic shared memory: once per backend and kernel,
     * with the occupancy query that comes with it */
    (void)vl_cuda_ctas_per_sm(c, (const void *)attn_prefill_kernel<DS, MT, ELEM, Q8>, kThreads,
                              C::kSmem);
    dim3 grid((unsigned)p->n_heads, (unsigned)((p->n_q + C::kBM - 1) / C::kBM));
    attn_prefill_kernel<DS, MT, ELEM, Q8><<<grid, kThreads, C::kSmem, stream>>>(*p);
    VL_CUDA_LAUNCH_CHECK();
}

template <int D, bool Q8>
void launch_rows(vl_cuda_ctx *c, const vl_attn_params *p, int rows_per_cta, cudaStream_t stream) {
    if (rows_per_cta == 64)
        launch<D, 1, false, Q8>(c, p, stream);
    else
        launch<D, 2, false, Q8>(c, p, stream);
}

/* The fast path's head dims (Q8: an int8 cache) */
template <bool Q8>
void launch_fast(vl_cuda_ctx *c, const vl_attn_params *p, int rows_per_cta, cudaStream_t stream) {
    switch (p->head_dim) {
#define VL_ATTN_PREFILL_CASE(d)                                                                    \
    case d:                                                                                        \
        launch_rows<d, Q8>(c, p, rows_per_cta, stream);                                            \
        break;
        VL_ATTN_HEAD_DIMS(VL_ATTN_PREFILL_CASE)
#undef VL_ATTN_PREFILL_CASE
    default:
        vl_cuda_fatal("vl_attn_prefill_launch", __FILE__, __LINE__, "head_dim not compiled");
    }
}

/* The element path's tile widths */
template <bool Q8> void launch_elem(vl_cuda_ctx *c, const vl_attn_params *p, cudaStream_t stream) {
    switch (element_dim(p->head_dim)) {
#define VL_ATTN_PREFILL_ELEM_CASE(ds)                                                              \
    case ds:                                                                                       \
        launch<ds, 1, true, Q8>(c, p, stream);                                                     \
        break;
        VL_ATTN_ELEMENT_DIMS(VL_ATTN_PREFILL_ELEM_CASE)
#undef VL_ATTN_PREFILL_ELEM_CASE
    }
}

} // namespace

/* head_dim in 1..128 (vl_cuda_attention_supported); rows_per_cta 64 or 128 (the fast path;
 * the element path always runs 64-row CTAs). An int8 cache (k_scale set) runs the Q8 kernels. */
void vl_attn_prefill_launch(vl_cuda_ctx *c, const vl_attn_params *p, int rows_per_cta,
                            cudaStream_t stream) {
    const bool q8 = p->k_scale != NULL;
    if (!vl_attn_fast_rows(p)) {
        if (q8)
            launch_elem<true>(c, p, stream);
        else
            launch_elem<false>(c, p, stream);
    } else if (q8) {
        launch_fast<true>(c, p, rows_per_cta, stream);
    } else {
        launch_fast<false>(c, p, rows_per_cta, stream);
    }
}
