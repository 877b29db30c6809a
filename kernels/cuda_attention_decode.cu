/* cuda_attention_decode.cu: attention of one new token over the KV cache (n_q == 1), split over the
 * keys (flash-decoding), bf16 in and out, fp32 softmax and accumulation.
 *
 * Version 3 (version 1: 2 CTAs per SM, splits of at least 256 keys, a combine thread per output
 * column walking every split; measured on an H100 at D 128, 28/4 heads: 15.0 us at 1364 keys,
 * 51.7 us = 1514 GB/s at 38192 keys; version 2, the query heads on the m16 side: 13.7 us and
 * 40.5 us, 176 registers and 5.4 M instructions at 38192 keys):
 *   - Grid (splits, kv heads, ceil(group / 8)). A CTA takes one kv head, the (up to 8) query
 *     heads that share it and one contiguous range of keys, so every K/V byte is read once. The
 *     scores are S^T = K . Q^T on tensor cores (mma m16n8k16: 16 keys x 8 heads, the 7 query
 *     heads of a Qwen2 kv head on the n8 side), o is O^T = V^T . P^T (16 columns x 8 heads a
 *     tile), P^T's fragments the scores' accumulator transposed by movmatrix: half the MMAs,
 *     accumulator registers and rescales of query rows on the m16 side (150 registers at D 128,
 *     168 with the int8 cache, from 176 and 224).
 *   - Each of the 4 warps streams its own 16-key steps (steps w, w + 4, ...) through a private
 *     two-stage cp.async ring, so the main loop needs no CTA barrier; at the end the warps merge
 *     their (max, sum, o) through shared memory: each head's warp weights made once (a thread a
 *     head), then four columns a thread.
 *   - A split writes its normalized o and log2-sum-exp per head to the workspace (fp32); the
 *     splits are weighed by 2^(lse - max lse) into bf16 o by the last CTA of the (kv head, head
 *     tile, sequence) to finish (a counter each; plans of at most kTailCombineSplits splits,
 *     a warp a head), or else by a second small kernel (longer plans: a CTA a head). With one
 *     split the first kernel writes o directly.
 *   - Splits (v2): as many CTAs as the SMs hold at once (the occupancy calculator: 3 per SM at
 *     D 128), so one wave streams the whole cache with each warp walking few serial steps; each
 *     split at least kMinSplitKeys (64: one step per warp) keys, at most kMaxSplits, and no more
 *     than the workspace holds (one split needs none). Short caches thus get many short splits:
 *     their time is the serial steps of one warp, not bandwidth.
 *   - Combine (v2): the threads of a head's CTA split the work as (4-float column group) x
 *     (split lane) with 8 float4 loads in flight per thread, then add the lane sums in lane
 *     order: a fixed order (deterministic), a few L2 round trips instead of one per 4 splits.
 *   - Runtime cache length (n_past_dev, for CUDA-graph replays): the host knows only the bound
 *     (the n_kv field), so the workspace has slots for the most splits any length up to it can
 *     use, walked by at most one wave of CTAs (each CTA takes splits x, x + gridDim.x, ...: a
 *     graph recorded with a bound far above the real lengths, vlrun serve's whole pool, costs no
 *     waves of empty CTAs); each CTA (once) and the combine step derive the split plan from the
 *     length they read, with the same split_plan code the host runs for an explicit length. The
 *     CTAs stop at the plan's splits and the combine reads no further, so a replay gives the
 *     same bits as the eager call of that length.
 *   - Head dims: every one up to 128 (cuda_attention_mma.cuh). Fast path: a multiple of 8 with
 * aligned rows; one not a multiple of 16 runs its MMAs over D + 8 columns whose padding is zeros in
 *     shared memory. Element path (any other head dim or alignment): the query and each step's
 *     rows are loaded one element at a time (synchronously) into rows of element_dim(D) columns,
 *     zeros past D; the int8 variant likewise for the codes (the scales keep their cp.async).
 *     The partials in the workspace are rows of decode_ws_row(D) floats (D rounded up to 4).
 *   - int8 cache (--kv int8, p.k_scale set; the Q8 variant): a warp's ring holds the raw int8
 *     rows and their fp32 scales (half the bytes of a bf16 step), and each step the warp turns
 *     them into one bf16 tile of exact integers (|q| <= 127), so the MMAs and ldmatrix are the
 *     bf16 kernel's. The scales stay out of the tile: s = (q . k_codes) * k_scale per key, and
 *     each key's probability is multiplied by its v_scale before P.V (the running sum l uses
 *     the plain probability). The per-warp shared memory stays that of the bf16 kernel, so
 *     occupancy is the same.
 * Knobs (benchmarking only, vl_cuda_config): attn_decode_splits = N forces the split count
 * before the length and workspace caps; attn_decode_waves = N lets a runtime-length launch walk
 * its slots with N waves of CTAs instead of one; attn_decode_tail = 0 leaves every combine to
 * the second kernel (its warp path for short plans: the tail's bits, test_attention_pages_gpu).
 * Paged caches (p.pages, vlrun serve's pool): the same kernels instantiated with PAGED, whose
 * row loads go through the sequence's block table (PagedRows) instead of a stride; the
 * contiguous instantiations are unchanged. With p.batch the n_q queries are n_q sequences' next
 * tokens: a third grid dimension (sequence x head tile), each CTA reading its sequence's length
 * and table row; each sequence is split exactly as a single call of its length would be (see
 * max_splits_of), so a sequence's bits do not depend on the batch while the workspace holds the
 * batch's partials (vl_cuda_attention_workspace_bytes of the batch call).
 * Leaves out: more than one query per sequence (a prefill chunk over pages: the engine gathers
 * the sequence first, kv_gather),
 * int4 or fp8 K/V, the tail combine for long plans (with ~90 splits one CTA would read ~300 KB
 * of partials alone, longer than the kernel boundary it saves).
 */
#include "kernels/cuda_attention_mma.cuh"
#include "kernels/cuda_ops.h" /* VL_CUDA_REQUIRE */
#include "kernels/cuda_pdl.cuh"

#include <stdint.h>
#include <stdlib.h>

using namespace vl_attn;

namespace {

constexpr int kMinSplitKeys = 64; /* one 16-key step per warp: shorter splits only add CTAs */
constexpr int kKeysPerStep = 16;  /* keys per warp step */
/* Query heads a CTA takes: the n8 side of the MMAs (scores are computed as K . Q^T, keys on the
 * m16 side), so one tile holds every query head of a kv head in all Qwen-VL models (7B: 7, 72B:
 * 8); a larger group takes several tiles, each reading the kv head's K and V again. */
constexpr int kHeadTile = 8;
__host__ __device__ constexpr int head_tiles(int group) {
    return (group + kHeadTile - 1) / kHeadTile;
}
constexpr int kCombineWarps = 16; /* the combine step's CTA */
/* Plans of at most this many splits are combined by the last CTA of each (kv head, head tile)
 * when the launch has counters: its warps read the few partials from L2 right away, where a
 * second kernel cost a launch and a CTA per head (8.2 us a layer at 16 rows of 1.4k keys, H100).
 * Longer plans (up to ~100 splits at 38k keys) keep the second kernel's 512 threads a head. */
constexpr int kTailCombineSplits = 16;
constexpr int kCombineThreads = kCombineWarps * 32;

/* How a call with n_keys visible keys is split: `splits` ranges of `chunk` keys (the last one
 * shorter), chunk a whole number of 4-warp rounds. max_splits folds in the SM count, the
 * workspace and kMaxSplits. Host and device run this same code (see the top of the file). */
struct SplitPlan {
    int splits, chunk;
};
__host__ __device__ inline SplitPlan split_plan(int n_keys, int max_splits) {
    constexpr int kRound = kWarps * kKeysPerStep;
    int s = n_keys / kMinSplitKeys;
    if (s > max_splits) s = max_splits;
    if (s < 1) s = 1;
    int chunk = (n_keys + s - 1) / s;
    chunk = (chunk + kRound - 1) / kRound * kRound;
    return {(n_keys + chunk - 1) / chunk, chunk}; /* the rounding may leave fewer than s */
}

/* Workspace rows of one split: a row per head, of every sequence of a batch (PAGED, p.batch). */
template <bool PAGED> __device__ __forceinline__ int ws_rows(const vl_attn_params &p) {
    return PAGED && p.batch ? p.n_heads * (int)p.n_q : p.n_heads;
}

/* Keys the single query sees (>= 1 for valid params): the cache, cut at q_pos0 + 1 when causal.
 * A batch (PAGED, p.batch): sequence seq's n_past_dev[seq] + 1, clamped into the bound n_kv as
 * kv_extent clamps (memory safety only). */
template <bool PAGED> __device__ __forceinline__ int decode_keys(const vl_attn_params &p, int seq) {
    if (PAGED && p.batch) {
        long long past = p.n_past_dev[seq];
        past = past < 0 ? 0 : past > p.n_kv - 1 ? p.n_kv - 1 : past;
        return (int)past + 1;
    }
    const KvExtent ext = kv_extent(p);
    long long n = ext.n_kv;
    if (p.causal && ext.q_pos0 + 1 < n) n = ext.q_pos0 + 1;
    return (int)n;
}

/* Rows of one sequence of a paged pool (kernels.h, vl_kv_pages): row t of the kv head whose
 * pointers the kernel holds lies in block tbl[t / block_tokens], at row t % block_tokens
 * (block_tokens = 1 << shift). The bf16 and int8 variants read through this and StridedRows
 * (the contiguous cache) with the same code. */
struct PagedRows {
    const int32_t *tbl;
    int64_t stride, block_stride, scale_block_stride;
    int shift, mask;
    __device__ __forceinline__ int64_t row(int t) const {
        return (int64_t)tbl[t >> shift] * block_stride + (int64_t)(t & mask) * stride;
    }
    __device__ __forceinline__ int64_t scale(int t) const {
        return (int64_t)tbl[t >> shift] * scale_block_stride + (t & mask);
    }
};

/* The rows of sequence seq: through its table row (PAGED) or rows kv_tok_stride apart. */
template <bool PAGED> __device__ __forceinline__ auto kv_rows(const vl_attn_params &p, int seq) {
    if constexpr (PAGED) {
        const int bt = p.pages.block_tokens;
        const int32_t *tbl = p.pages.table + (p.batch ? (int64_t)seq * p.pages.table_stride : 0);
        return PagedRows{tbl,
                         p.kv_tok_stride,
                         p.pages.block_stride,
                         p.pages.scale_block_stride,
                         31 - __clz(bt),
                         bt - 1};
    } else {
        return StridedRows{p.kv_tok_stride};
    }
}

/* D: the columns a tile row holds: the head dim on the fast path, element_dim(head dim) on the
 * element path (where the real head dim is p.head_dim). */
template <int D, bool Q8> struct Decode {
    static constexpr int kKeys = kKeysPerStep;
    static constexpr int kStages = 2;                  /* cp.async ring depth per warp */
    static constexpr int kDP = padded_dim(D);          /* head dim the MMAs run over */
    static constexpr int kLD = kDP + 8;                /* shared row stride, elements */
    static constexpr int kTileElems = 2 * kKeys * kLD; /* one bf16 step: K rows, then V rows */
    /* int8 cache: a ring stage holds the step's raw rows (K, then V, D bytes each) and its 16 K
     * and 16 V scales; the warp converts its current stage into one bf16 tile */
    static constexpr int kQ8StageBytes = 2 * kKeys * D + 2 * kKeys * (int)sizeof(float);
    static constexpr int kCopyBytes = D % 16 == 0 ? 16 : 8; /* cp.async width of int8 rows */
    /* bytes per warp: the bf16 ring, or one bf16 tile + the int8 ring */
    static constexpr int kWarpBytes =
        Q8 ? kTileElems * 2 + kStages * kQ8StageBytes : kStages * kTileElems * 2;
    static constexpr int kPadRows = Q8 ? 2 * kKeys : kStages * 2 * kKeys; /* bf16 rows per warp */
    static constexpr int kSmem = kHeadTile * kLD * (int)sizeof(bf16) + kWarps * kWarpBytes;
    static constexpr int kSO = kDP + 4; /* row stride of the fp32 merge buffer (spreads banks) */
    static_assert(D % 8 == 0 && D <= kMaxHeadDim, "head_dim must be a multiple of 8, at most 128");
    static_assert(kDP == D || kDP == D + 8, "one 16-byte pad chunk at most");
    static_assert(kWarpBytes % 16 == 0, "warp regions stay 16-byte aligned");
    static_assert(kCopyBytes * (D / kCopyBytes) == D && kPadRows % 16 == 0, "whole copies, rows");
    static_assert(kHeadTile * kSO * sizeof(float) <= (size_t)kWarpBytes,
                  "the merge buffer reuses a warp's region");
    static_assert(kSmem <= 99 * 1024, "a CTA must fit the 99 KB of sm_86 and sm_89");
};

/* cp.async of this warp's step: keys [key0, key0 + 16) of K and V into one ring stage; keys at
 * or past key_end are zero-filled; the padding columns past D are left alone. */
template <int D, typename Rows>
__device__ __forceinline__ void load_step_async(bf16 *sk, const bf16 *k, const bf16 *v,
                                                const Rows &at, int key0, int key_end, int lane) {
    constexpr int kLD = Decode<D, false>::kLD, kChunks = D / 8, kTotal = 16 * kChunks;
    bf16 *sv = sk + 16 * kLD;
#pragma unroll
    for (int it = 0; it < (kTotal + 31) / 32; it++) {
        const int c = it * 32 + lane, r = c / kChunks, col = (c % kChunks) * 8;
        if (kTotal % 32 == 0 || c < kTotal) { /* an odd D / 8 leaves the last pass partial */
            const bool valid = key0 + r < key_end;
            const int64_t off = valid ? at.row(key0 + r) + col : 0;
            cp_async16(smem_u32(sk + r * kLD + col), k + off, valid);
            cp_async16(smem_u32(sv + r * kLD + col), v + off, valid);
        }
    }
}

/* The step of load_step_async, or on the element path (ELEM) element loads of the d real
 * columns, zeros up to D. */
template <int D, bool ELEM, typename Rows>
__device__ __forceinline__ void load_step(bf16 *sk, const bf16 *k, const bf16 *v, const Rows &at,
                                          int key0, int key_end, int lane, int d) {
    if constexpr (ELEM) {
        constexpr int kLD = Decode<D, false>::kLD;
        uint16_t *sk16 = reinterpret_cast<uint16_t *>(sk);
        load_rows_at<uint16_t, D, kLD>(sk16, reinterpret_cast<const uint16_t *>(k), at, key0, 16,
                                       key_end, d, lane, 32);
        load_rows_at<uint16_t, D, kLD>(sk16 + 16 * kLD, reinterpret_cast<const uint16_t *>(v), at,
                                       key0, 16, key_end, d, lane, 32);
    } else {
        load_step_async<D>(sk, k, v, at, key0, key_end, lane);
    }
}

/* The int8 twin: the step's raw K and V rows and their scales into one int8 stage (layout in
 * Decode::kQ8StageBytes); keys at or past key_end are zero-filled, scales included. On the
 * element path (ELEM) the codes come by element loads of the d real columns, zeros up to D. */
template <int D, bool ELEM, typename Rows>
__device__ __forceinline__ void load_step_q8(unsigned char *st, const int8_t *k, const int8_t *v,
                                             const float *ks, const float *vs, const Rows &at,
                                             int key0, int key_end, int lane, int d) {
    if constexpr (ELEM) {
        int8_t *st8 = reinterpret_cast<int8_t *>(st);
        load_rows_at<int8_t, D, D>(st8, k, at, key0, 16, key_end, d, lane, 32);
        load_rows_at<int8_t, D, D>(st8 + 16 * D, v, at, key0, 16, key_end, d, lane, 32);
    } else {
        constexpr int kCB = Decode<D, true>::kCopyBytes, kChunks = D / kCB, kTotal = 16 * kChunks;
#pragma unroll
        for (int it = 0; it < (kTotal + 31) / 32; it++) {
            const int c = it * 32 + lane, r = c / kChunks, col = (c % kChunks) * kCB;
            if (kTotal % 32 == 0 || c < kTotal) {
                const bool valid = key0 + r < key_end;
                const int64_t off = valid ? at.row(key0 + r) + col : 0;
                if constexpr (kCB == 16) {
                    cp_async16(smem_u32(st + r * D + col), k + off, valid);
                    cp_async16(smem_u32(st + (16 + r) * D + col), v + off, valid);
                } else {
                    cp_async_small<8>(smem_u32(st + r * D + col), k + off, valid);
                    cp_async_small<8>(smem_u32(st + (16 + r) * D + col), v + off, valid);
                }
            }
        }
    }
    /* lanes 0..15: the K scales of the 16 keys, lanes 16..31: the V scales */
    const int r = lane & 15;
    const bool valid = key0 + r < key_end;
    cp_async_small<4>(smem_u32(st + 32 * D + lane * 4),
                      (lane < 16 ? ks : vs) + (valid ? at.scale(key0 + r) : 0), valid);
}

/* int8 stage -> bf16 tile (K rows then V rows, stride kLD): the codes as exact bf16 integers;
 * the scales are applied to the scores (K) and to the probabilities (V) instead. */
template <int D>
__device__ __forceinline__ void convert_step(bf16 *tile, const unsigned char *st, int lane) {
    constexpr int kLD = Decode<D, true>::kLD, kUnits = 2 * 16 * D / 8; /* 8 codes each */
#pragma unroll
    for (int u = lane; u < kUnits; u += 32) {
        const int r = u / (D / 8), col = (u % (D / 8)) * 8;
        const uint2 w = *reinterpret_cast<const uint2 *>(st + r * D + col);
        const uint2 lo = vl_int8x4_to_bf16x4(w.x), hi = vl_int8x4_to_bf16x4(w.y);
        *reinterpret_cast<uint4 *>(tile + r * kLD + col) = make_uint4(lo.x, lo.y, hi.x, hi.y);
    }
}

/* Split `split` of one CTA's (kv head, head tile, sequence), whose n_keys keys are split as
 * `plan` (split < plan.splits). Q8: the cache is int8 with per-row scales (p.k_scale set), see
 * the top of the file. DS: the columns of a tile row (Decode); ELEM: the element path, where the
 * real head dim is p.head_dim. PAGED: the cache is a paged pool (p.pages) and, with p.batch,
 * query row seq is sequence seq's (blockIdx.z = seq * head tiles + tile); the partials of head h
 * of sequence seq are then row seq * n_heads + h of the workspace. n_slots: the splits the
 * workspace is laid out for (the log2-sum-exps follow their outputs). */
template <int DS, bool Q8, bool ELEM, bool PAGED>
__device__ __forceinline__ void decode_split(const vl_attn_params &p, const int n_keys,
                                             const SplitPlan plan, int n_slots, float *ws,
                                             const int split) {
    using C = Decode<DS, Q8>;
    constexpr int kLD = C::kLD, kStages = C::kStages, DP = C::kDP;
    const int D = ELEM ? p.head_dim : DS, WD = decode_ws_row(D); /* real head dim, ws row */
    extern __shared__ __align__(16) unsigned char smem[];
    /* [kHeadTile][kLD]: the query heads, zero rows after */
    bf16 *sQ = reinterpret_cast<bf16 *>(smem);
    unsigned char *const warps0 = smem + kHeadTile * kLD * sizeof(bf16); /* kWarps regions */
    __shared__ float s_m[kWarps][kHeadTile], s_l[kWarps][kHeadTile], s_f[kWarps][kHeadTile];
    __shared__ float s_wl[kHeadTile];

    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int gid = lane / 4, tig = lane % 4;
    unsigned char *const wbase = warps0 + warp * C::kWarpBytes;
    bf16 *ring = reinterpret_cast<bf16 *>(wbase); /* bf16: the ring; Q8: the converted tile */
    unsigned char *ring8 = wbase + C::kTileElems * sizeof(bf16); /* Q8: the int8 ring */
    const int kv_head = (int)blockIdx.y;
    const int group = p.n_heads / p.n_kv_heads, tiles = head_tiles(group);
    const int seq = PAGED ? (int)blockIdx.z / tiles : 0;
    const int tile = PAGED ? (int)blockIdx.z % tiles : (int)blockIdx.z;
    const int H_all = ws_rows<PAGED>(p);
    const int n_rows = min(kHeadTile, group - kHeadTile * tile);
    const int head0 = kv_head * group + kHeadTile * tile;
    const int kb = split * plan.chunk, ke = min(kb + plan.chunk, n_keys); /* kb < ke */
    const bf16 *q = static_cast<const bf16 *>(p.q) + seq * p.q_stride + (int64_t)head0 * D;
    bf16 *o_seq = static_cast<bf16 *>(p.o) + seq * p.o_stride;
    const auto rows_at = kv_rows<PAGED>(p, seq);
    const int64_t kv_off = (int64_t)kv_head * p.kv_head_stride;
    const bf16 *k = static_cast<const bf16 *>(p.k) + kv_off;
    const bf16 *v = static_cast<const bf16 *>(p.v) + kv_off;
    const int8_t *k8 = static_cast<const int8_t *>(p.k) + kv_off;
    const int8_t *v8 = static_cast<const int8_t *>(p.v) + kv_off;
    const float *ks = Q8 ? p.k_scale + (int64_t)kv_head * p.kv_scale_head_stride : nullptr;
    const float *vs = Q8 ? p.v_scale + (int64_t)kv_head * p.kv_scale_head_stride : nullptr;

    if constexpr (DP != DS) {
        /* the padding columns of the Q rows and of every bf16 row: zeros, so the MMAs over DP
         * add nothing; nothing else writes them, the barrier below publishes them */
        for (int r = (int)threadIdx.x; r < kHeadTile + kWarps * C::kPadRows; r += kThreads) {
            const int w = (r - kHeadTile) / C::kPadRows, i = (r - kHeadTile) % C::kPadRows;
            bf16 *row = r < kHeadTile
                            ? sQ + r * kLD
                            : reinterpret_cast<bf16 *>(warps0 + w * C::kWarpBytes) + i * kLD;
            *reinterpret_cast<uint4 *>(row + DS) = make_uint4(0u, 0u, 0u, 0u);
        }
    }
    if constexpr (ELEM) { /* the query heads are rows D apart */
        load_rows_elems<uint16_t, DS, kLD>(reinterpret_cast<uint16_t *>(sQ),
                                           reinterpret_cast<const uint16_t *>(q), D, 0, kHeadTile,
                                           n_rows, D, (int)threadIdx.x, kThreads);
    } else {
        constexpr int kChunks = DS / 8;
        for (int c = (int)threadIdx.x; c < kHeadTile * kChunks; c += kThreads) {
            const int r = c / kChunks, col = (c % kChunks) * 8;
            const bool valid = r < n_rows;
            cp_async16(smem_u32(sQ + r * kLD + col), valid ? q + r * D + col : q, valid);
        }
    }
    cp_async_commit();

    /* stage j of this warp: keys kb + (warp + 4 j) * 16 onwards */
    auto issue = [&](int j) {
        const int key0 = kb + (warp + kWarps * j) * 16;
        if constexpr (Q8)
            load_step_q8<DS, ELEM>(ring8 + (j % kStages) * C::kQ8StageBytes, k8, v8, ks, vs,
                                   rows_at, key0, ke, lane, D);
        else
            load_step<DS, ELEM>(ring + (j % kStages) * C::kTileElems, k, v, rows_at, key0, ke, lane,
                                D);
    };
    const int n_steps = (ke - kb + 15) / 16;
    const int my_steps = warp < n_steps ? (n_steps - warp + kWarps - 1) / kWarps : 0;
#pragma unroll
    for (int j = 0; j < kStages - 1; j++) {
        if (j < my_steps) issue(j);
        cp_async_commit(); /* empty groups keep the wait counts uniform */
    }
    cp_async_wait<kStages - 1>();
    __syncthreads(); /* the Q rows every thread copied (and the zero padding) have landed */

    /* Scores as S^T = K . Q^T (mma m16n8k16: 16 keys x 8 heads) and o as O^T = V^T . P^T (16
     * columns x 8 heads a tile): lane (g = lane / 4, t = lane % 4) holds keys g and g + 8 of the
     * step and heads 2t and 2t + 1 of the scores, columns g and g + 8 of each 16-column tile of
     * o. P^T's B fragments are the scores' accumulator, packed to bf16 and transposed with
     * movmatrix. Keys are K's and V's rows: ldmatrix (K) and ldmatrix.trans (V) as in prefill. */
    const int k_row = (lane & 7) + ((lane >> 3) & 1) * 8, k_col = (lane >> 4) * 8;
    const int v_row = (lane & 7) + (lane >> 4) * 8, v_col = ((lane >> 3) & 1) * 8;
    uint32_t qb[DP / 16][2]; /* Q^T: B fragments of each 16-column step */
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++)
        ldmatrix_x2(qb[kk],
                    smem_u32(sQ) +
                        (uint32_t)(((lane & 7) * kLD + kk * 16 + ((lane >> 3) & 1) * 8) * 2));

    float o[DP / 16][4]; /* O^T tiles: columns 16 dt + g (+ 8) of heads 2t, 2t + 1 */
#pragma unroll
    for (int dt = 0; dt < DP / 16; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
    /* per head 2t + e: the running max (the same in every lane of the column) and this lane's
     * part of the running sum (its two keys of each step; added over the lanes at the end) */
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const float scale_log2 = p.scale * 1.4426950408889634f;

    for (int j = 0; j < my_steps; j++) {
        if (j + kStages - 1 < my_steps) issue(j + kStages - 1);
        cp_async_commit();
        cp_async_wait<kStages - 1>();
        __syncwarp(); /* the other lanes' copies of step j are visible */

        /* Q8: the scales of this lane's keys g and g + 8, K then V */
        float ksc[2] = {1.f, 1.f}, vsc[2] = {1.f, 1.f};
        uint32_t k_st;
        if constexpr (Q8) {
            const unsigned char *st = ring8 + (j % kStages) * C::kQ8StageBytes;
            convert_step<DS>(ring, st, lane);
            const float *sc = reinterpret_cast<const float *>(st + 32 * DS);
            ksc[0] = sc[gid], ksc[1] = sc[gid + 8];
            vsc[0] = sc[16 + gid], vsc[1] = sc[16 + gid + 8];
            __syncwarp(); /* the tile is whole */
            k_st = smem_u32(ring);
        } else {
            k_st = smem_u32(ring + (j % kStages) * C::kTileElems);
        }
        const uint32_t v_st = k_st + 16 * kLD * (uint32_t)sizeof(bf16);
        const int key0 = kb + (warp + kWarps * j) * 16;
        /* two accumulation chains (even and odd column steps) for the MMA latency */
        float s[4] = {0.f, 0.f, 0.f, 0.f}, s2[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++) {
            uint32_t a[4];
            ldmatrix_x4(a, k_st + (uint32_t)((k_row * kLD + kk * 16 + k_col) * 2));
            vl_mma_bf16(kk % 2 ? s2 : s, a, qb[kk][0], qb[kk][1]);
        }
#pragma unroll
        for (int e = 0; e < 4; e++) s[e] += s2[e];
        if constexpr (Q8)
#pragma unroll
            for (int e = 0; e < 4; e++) s[e] *= ksc[e / 2];
        if (key0 + 16 > ke) { /* the split's last step: keys past its end are zeros */
            if (key0 + gid >= ke) s[0] = s[1] = -INFINITY;
            if (key0 + gid + 8 >= ke) s[2] = s[3] = -INFINITY;
        }

        float alpha[2];
#pragma unroll
        for (int e = 0; e < 2; e++) { /* head 2t + e: scores s[e] (key g), s[2 + e] (key g + 8) */
            float mx = fmaxf(m[e], fmaxf(s[e], s[2 + e]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
            const float base = mx == -INFINITY ? 0.f : mx * scale_log2;
            alpha[e] = exp2_approx(m[e] * scale_log2 - base);
            m[e] = mx;
            const float p0 = exp2_approx(fmaf(s[e], scale_log2, -base));
            const float p1 = exp2_approx(fmaf(s[2 + e], scale_log2, -base));
            l[e] = l[e] * alpha[e] + (p0 + p1);
            s[e] = p0, s[2 + e] = p1;
            if constexpr (Q8) s[e] *= vsc[0], s[2 + e] *= vsc[1]; /* each key's V scale */
        }
        /* the maxima rarely move after the first steps: skip the rescale when no head's did */
        if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f))
#pragma unroll
            for (int dt = 0; dt < DP / 16; dt++) {
                o[dt][0] *= alpha[0], o[dt][1] *= alpha[1];
                o[dt][2] *= alpha[0], o[dt][3] *= alpha[1];
            }
        const uint32_t pb0 = movmatrix_trans(vl_pack_bf16x2(s[0], s[1])); /* keys 0..7 */
        const uint32_t pb1 = movmatrix_trans(vl_pack_bf16x2(s[2], s[3])); /* keys 8..15 */
#pragma unroll
        for (int dt = 0; dt < DP / 16; dt++) {
            uint32_t a[4];
            ldmatrix_x4_trans(a, v_st + (uint32_t)((v_row * kLD + dt * 16 + v_col) * 2));
            vl_mma_bf16(o[dt], a, pb0, pb1);
        }
        __syncwarp(); /* every lane is done with this stage (and tile) before it is refilled */
    }
    cp_async_wait<0>();
    __syncwarp();

    /* merge the 4 warps: each leaves its unnormalized o (rows: heads) in its own region, max and
     * sum beside */
    float *so = reinterpret_cast<float *>(wbase);
#pragma unroll
    for (int e = 0; e < 2; e++) {
        float sum = l[e];
        sum += __shfl_xor_sync(0xffffffffu, sum, 4);
        sum += __shfl_xor_sync(0xffffffffu, sum, 8);
        sum += __shfl_xor_sync(0xffffffffu, sum, 16);
        const int r = 2 * tig + e;
        if (gid == 0) s_m[warp][r] = m[e], s_l[warp][r] = sum;
#pragma unroll
        for (int dt = 0; dt < DP / 16; dt++) {
            so[r * C::kSO + dt * 16 + gid] = o[dt][e];
            so[r * C::kSO + dt * 16 + gid + 8] = o[dt][2 + e];
        }
    }
    __syncthreads();

    /* per head (thread r): each warp's weight 2^(max_w - max), a warp without keys 0, and the
     * weighted sum of the warps' sums; then the outputs four columns a thread */
    const bool single = plan.splits == 1; /* then ws may be NULL */
    const int64_t ws_row0 = (int64_t)split * H_all + seq * p.n_heads + head0;
    if ((int)threadIdx.x < n_rows) {
        const int r = (int)threadIdx.x;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarps; w++) mx = fmaxf(mx, s_m[w][r]);
        float wl = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; w++) {
            const float f =
                s_m[w][r] == -INFINITY ? 0.f : exp2_approx((s_m[w][r] - mx) * scale_log2);
            s_f[w][r] = f;
            wl += f * s_l[w][r];
        }
        s_wl[r] = wl;
        if (!single) /* the log2-sum-exps follow the outputs of all launched splits */
            ws[(int64_t)n_slots * H_all * WD + ws_row0 + r] =
                wl > 0.f ? mx * scale_log2 + log2f(wl) : -INFINITY;
    }
    __syncthreads();
    const bool vec = D % 4 == 0 && ((uintptr_t)p.o & 7u) == 0;
    for (int idx = (int)threadIdx.x; idx < n_rows * (WD / 4); idx += kThreads) {
        const int r = idx / (WD / 4), c = 4 * (idx % (WD / 4));
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int w = 0; w < kWarps; w++) {
            const float f = s_f[w][r];
            const float4 x = *reinterpret_cast<const float4 *>(warps0 + w * C::kWarpBytes +
                                                               (r * C::kSO + c) * sizeof(float));
            acc[0] += f * x.x, acc[1] += f * x.y, acc[2] += f * x.z, acc[3] += f * x.w;
        }
        const float wl = s_wl[r];
        float out[4];
#pragma unroll /* a ws row's padding (D not a multiple of 4): zeros, never stored in o */
        for (int e = 0; e < 4; e++) out[e] = wl > 0.f && c + e < D ? acc[e] / wl : 0.f;
        if (!single) {
            *reinterpret_cast<float4 *>(ws + (ws_row0 + r) * WD + c) =
                make_float4(out[0], out[1], out[2], out[3]);
        } else if (vec) {
            *reinterpret_cast<uint2 *>(o_seq + (int64_t)(head0 + r) * D + c) =
                make_uint2(vl_pack_bf16x2(out[0], out[1]), vl_pack_bf16x2(out[2], out[3]));
        } else {
            for (int e = 0; e < 4 && c + e < D; e++)
                o_seq[(int64_t)(head0 + r) * D + c + e] = __float2bfloat16_rn(out[e]);
        }
    }
}

/* o of workspace row `row` (one head of one sequence; H rows a split) from its n_splits
 * partials, by one warp: lane l takes the columns 4l .. 4l + 3 (ws rows are WD <= 128 floats),
 * and every lane walks the splits in order with the same weights 2^(lse - max), so the bits are
 * the same whichever kernel runs it (the tail of attn_decode_kernel or attn_decode_combine).
 * out: the head's D outputs; vec: 8-byte stores allowed (D % 4 == 0, o aligned). */
__device__ __forceinline__ void combine_row_warp(const float *ws, int n_slots, int H, int WD, int D,
                                                 int row, int n_splits, bf16 *out, bool vec) {
    /* loads in flight per lane: the partials sit in L2. The first batch is loaded with the
     * log2-sum-exps of the others, which set the maximum with its own: one round trip fewer
     * than the maximum first; the weights and the order of the sums are the same. */
    constexpr int kBatch = 8;
    const int lane = (int)threadIdx.x % 32, c0 = 4 * lane;
    const float *lse = ws + (int64_t)n_slots * H * WD + row; /* split s: lse[s * H] */
    const bool cols = c0 < WD;
    const float4 *src = reinterpret_cast<const float4 *>(ws + (int64_t)row * WD + c0);
    const int64_t split_f4 = (int64_t)H * WD / 4; /* one split's outputs, in float4 */
    float l[kBatch];
    float4 x[kBatch];
    auto load_batch = [&](int s0) {
#pragma unroll
        for (int j = 0; j < kBatch; j++) {
            const int s = s0 + j;
            l[j] = s < n_splits ? __ldcg(lse + (int64_t)s * H) : -INFINITY;
            x[j] =
                s < n_splits && cols ? __ldcg(src + s * split_f4) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
    };
    load_batch(0);
    float mx = -INFINITY;
    for (int s = kBatch + lane; s < n_splits; s += 32) mx = fmaxf(mx, __ldcg(lse + (int64_t)s * H));
#pragma unroll
    for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
#pragma unroll
    for (int j = 0; j < kBatch; j++) mx = fmaxf(mx, l[j]);
    float sum = 0.f;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int s0 = 0; s0 < n_splits; s0 += kBatch) {
        if (s0 > 0) load_batch(s0);
#pragma unroll
        for (int j = 0; j < kBatch; j++) {
            /* mx is finite (split 0 always has keys); a split without keys weighs 0 */
            const float w = l[j] == -INFINITY ? 0.f : exp2_approx(l[j] - mx);
            sum += w;
            acc.x = fmaf(w, x[j].x, acc.x);
            acc.y = fmaf(w, x[j].y, acc.y);
            acc.z = fmaf(w, x[j].z, acc.z);
            acc.w = fmaf(w, x[j].w, acc.w);
        }
    }
    if (!cols) return;
    const float inv = 1.f / sum;
    if (vec) {
        *reinterpret_cast<uint2 *>(out + c0) = make_uint2(vl_pack_bf16x2(acc.x * inv, acc.y * inv),
                                                          vl_pack_bf16x2(acc.z * inv, acc.w * inv));
    } else { /* the columns of this group below D, one at a time (the element path) */
        const float part[4] = {acc.x, acc.y, acc.z, acc.w};
        for (int e = 0; e < 4 && c0 + e < D; e++) out[c0 + e] = __float2bfloat16_rn(part[e] * inv);
    }
}

/* Whether the combine may store 4 outputs at once. */
__device__ __forceinline__ bool combine_vec_ok(const vl_attn_params &p) {
    return p.head_dim % 4 == 0 && ((uintptr_t)p.o & 7u) == 0;
}

/* After a CTA's splits: the last CTA of its (kv head, head tile, sequence) to finish, counted in
 * counters[blockIdx.z * gridDim.y + blockIdx.y] (zero before, left zero), combines the tile's
 * heads, a warp a head (combine_row_warp). Every CTA of the launch counts, with or without a
 * split of its own. H: workspace rows a split. */
__device__ __forceinline__ void decode_tail_combine(const vl_attn_params &p, const int n_splits,
                                                    int n_slots, int H, const float *ws,
                                                    int *counters, int seq, int tile) {
    __shared__ int s_last;
    __threadfence(); /* this CTA's partials are visible before it is counted */
    __syncthreads();
    const int at = (int)(blockIdx.z * gridDim.y + blockIdx.y);
    if (threadIdx.x == 0) s_last = atomicAdd(counters + at, 1) == (int)gridDim.x - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence(); /* and so are the other CTAs' */
    const int group = p.n_heads / p.n_kv_heads, n_rows = min(kHeadTile, group - kHeadTile * tile);
    const int head0 = (int)blockIdx.y * group + kHeadTile * tile;
    const int D = p.head_dim;
    bf16 *o_seq = static_cast<bf16 *>(p.o) + seq * p.o_stride;
    for (int r = (int)threadIdx.x / 32; r < n_rows; r += kWarps)
        combine_row_warp(ws, n_slots, H, decode_ws_row(D), D, seq * p.n_heads + head0 + r, n_splits,
                         o_seq + (int64_t)(head0 + r) * D, combine_vec_ok(p));
    if (threadIdx.x == 0) counters[at] = 0; /* ready for the next launch */
}

/* The splits blockIdx.x, + gridDim.x, ... of the row's plan (see decode_split): a launch for a
 * runtime length is capped at one wave of CTAs, each walking several splits, so that a bound
 * far above the real lengths (a graph recorded for the whole pool) costs no empty waves. The
 * plan, the same for every CTA of the row, is made once; slots past it (the bound covers every
 * length) are left alone. Every split is computed as by a CTA of its own: the same bits. */
template <int DS, bool Q8, bool ELEM, bool PAGED>
__global__ void __launch_bounds__(kThreads, 3)
    attn_decode_kernel(const vl_attn_params p, int max_splits, int n_slots, float *ws,
                       int *counters) {
    vl_pdl_launch_dependents(); /* the o GEMV after it may bring in its weights meanwhile */
    const int tiles = head_tiles(p.n_heads / p.n_kv_heads);
    const int seq = PAGED ? (int)blockIdx.z / tiles : 0;
    const int n_keys = decode_keys<PAGED>(p, seq);
    const SplitPlan plan = split_plan(n_keys, max_splits);
    const int end = min(plan.splits, n_slots); /* plan.splits <= n_slots by the launch */
#pragma unroll 1
    for (int split = (int)blockIdx.x; split < end; split += (int)gridDim.x) {
        if (split != (int)blockIdx.x) __syncthreads(); /* this split reuses the shared memory */
        decode_split<DS, Q8, ELEM, PAGED>(p, n_keys, plan, n_slots, ws, split);
    }
    /* counters: the launch's plans of 2 .. kTailCombineSplits splits are combined here */
    if (counters && plan.splits > 1 && plan.splits <= kTailCombineSplits)
        decode_tail_combine(p, plan.splits, n_slots, ws_rows<PAGED>(p), ws, counters, seq,
                            PAGED ? (int)blockIdx.z % tiles : (int)blockIdx.z);
}

/* o[head] = sum_s 2^(lse_s - max) o_s / sum_s 2^(lse_s - max) over the splits of the plan;
 * one CTA per query head. n_slots: the splits the first kernel's workspace is laid out for. With a
 * one-split plan the first kernel has written o itself. Thread t takes the 4 columns 4 (t % cols)
 * .. + 3 and the splits t / cols, + lanes, ... in order (cols = WD / 4 column groups of the ws rows
 * of WD = decode_ws_row(D) floats, lanes = kCombineThreads / cols split lanes); the lane sums are
 * then added in lane order. kBatch loads are issued before any is used: the partials sit in L2 and
 * the time is L2 round trips, so they must overlap; 512 threads (16 split lanes at D 128) put a
 * whole 38k-key plan's ~100 splits in flight in one round (128 threads took four: ~9 us against ~6
 * on an H100, measured by ncu). A batch (PAGED, p.batch): one CTA per (sequence, head), blockIdx.x
 * = seq * n_heads + head, the workspace row of the first kernel. */
template <bool PAGED>
__global__ void __launch_bounds__(kCombineThreads)
    attn_decode_combine(const vl_attn_params p, int max_splits, int n_slots, const float *ws,
                        bool tail) {
    vl_pdl_wait(); /* a programmatic dependent of the first kernel (pdl): its partials */
    vl_pdl_launch_dependents(); /* as attn_decode_kernel */
    constexpr int kBatch = 8;
    __shared__ float s_w[kMaxSplits], s_red[kCombineWarps];
    __shared__ float4 s_acc[kCombineThreads];
    const int hh = (int)blockIdx.x, seq = PAGED && p.batch ? hh / p.n_heads : 0;
    const int n_splits = split_plan(decode_keys<PAGED>(p, seq), max_splits).splits;
    if (n_splits == 1) return;
    const int head = hh, D = p.head_dim, WD = decode_ws_row(D);
    const int H = ws_rows<PAGED>(p);
    if (n_splits <= kTailCombineSplits) { /* the tail's plans: its arithmetic, so its bits */
        if (!tail && threadIdx.x < 32)    /* tail: the first kernel has combined them */
            combine_row_warp(ws, n_slots, H, WD, D, head, n_splits,
                             static_cast<bf16 *>(p.o) + seq * p.o_stride +
                                 (int64_t)(head - seq * p.n_heads) * D,
                             combine_vec_ok(p));
        return;
    }
    const float *lse = ws + (int64_t)n_slots * H * WD;
    float mx = -INFINITY;
    for (int s = (int)threadIdx.x; s < n_splits; s += kCombineThreads)
        mx = fmaxf(mx, lse[s * H + head]);
    mx = block_reduce<kCombineWarps>(mx, true, s_red); /* finite: split 0 always has keys */
    float sum = 0.f;
    for (int s = (int)threadIdx.x; s < n_splits; s += kCombineThreads) {
        const float x = lse[s * H + head];
        const float w = x == -INFINITY ? 0.f : exp2_approx(x - mx);
        s_w[s] = w;
        sum += w;
    }
    sum = block_reduce<kCombineWarps>(sum, false, s_red); /* its barriers also publish s_w */
    const float inv = 1.f / sum;

    const int t = (int)threadIdx.x, cols = WD / 4, lanes = kCombineThreads / cols;
    const int col = t % cols, lane_s = t / cols;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (lane_s < lanes) { /* cols need not divide kCombineThreads (D 24, 40, ...) */
        /* ws rows are WD floats, WD a multiple of 4, ws 16-byte aligned (the launcher checks) */
        const float4 *src = reinterpret_cast<const float4 *>(ws + (int64_t)head * WD) + col;
        const int64_t split_f4 = (int64_t)H * WD / 4; /* one split's outputs, in float4 */
        for (int s0 = lane_s; s0 < n_splits; s0 += kBatch * lanes) {
            float4 x[kBatch];
#pragma unroll
            for (int j = 0; j < kBatch; j++) {
                const int s = s0 + j * lanes;
                x[j] = s < n_splits ? __ldcg(src + s * split_f4) : make_float4(0.f, 0.f, 0.f, 0.f);
            }
#pragma unroll
            for (int j = 0; j < kBatch; j++) {
                const int s = s0 + j * lanes;
                const float w = s < n_splits ? s_w[s] : 0.f;
                acc.x = fmaf(w, x[j].x, acc.x);
                acc.y = fmaf(w, x[j].y, acc.y);
                acc.z = fmaf(w, x[j].z, acc.z);
                acc.w = fmaf(w, x[j].w, acc.w);
            }
        }
    }
    s_acc[t] = acc;
    __syncthreads();
    if (t < cols) {
        float4 tot = s_acc[t];
        for (int j = 1; j < lanes; j++) {
            const float4 a = s_acc[j * cols + t];
            tot.x += a.x, tot.y += a.y, tot.z += a.z, tot.w += a.w;
        }
        bf16 *out = static_cast<bf16 *>(p.o) + seq * p.o_stride +
                    (int64_t)(head - seq * p.n_heads) * D + 4 * t;
        if (D % 4 == 0 && ((uintptr_t)p.o & 7u) == 0) {
            *reinterpret_cast<uint2 *>(out) = make_uint2(vl_pack_bf16x2(tot.x * inv, tot.y * inv),
                                                         vl_pack_bf16x2(tot.z * inv, tot.w * inv));
        } else { /* the columns of this group below D, one at a time (the element path) */
            const float part[4] = {tot.x, tot.y, tot.z, tot.w};
            for (int e = 0; e < 4 && 4 * t + e < D; e++)
                out[e] = __float2bfloat16_rn(part[e] * inv);
        }
    }
}

/* Splits a call may use: one wave of one sequence's CTAs (a batch plans each of its sequences
 * as a single call of that length would: the same splits, so the same bits whatever else is in
 * the batch), at most kMaxSplits, and no more than the workspace holds for n_seq sequences. */
template <int DS, bool Q8, bool ELEM>
int max_splits_of(vl_cuda_ctx *c, const vl_attn_params *p, size_t workspace_bytes, int n_seq) {
    const int group = p->n_heads / p->n_kv_heads;
    const int64_t ctas = (int64_t)p->n_kv_heads * head_tiles(group);
    /* one wave: every split of every head resident at once (CTAs an SM holds after opting in to
     * the kernel's shared memory, asked once per backend and kernel). The contiguous kernel's
     * count for both layouts, so that a paged call is planned, and rounded, as the contiguous one
     * (the paged kernel takes the same shared memory) */
    const int per_sm = vl_cuda_ctas_per_sm(c, (const void *)attn_decode_kernel<DS, Q8, ELEM, false>,
                                           kThreads, Decode<DS, Q8>::kSmem);
    int64_t max_splits = (int64_t)per_sm * c->sm_count / ctas;
    /* the backend's attn_decode_splits (benchmarking only): before the length and workspace caps */
    if (c->cfg.attn_decode_splits > 0) max_splits = c->cfg.attn_decode_splits;
    if (max_splits > kMaxSplits) max_splits = kMaxSplits;
    const size_t per_split = (size_t)n_seq * (size_t)p->n_heads *
                             (size_t)(decode_ws_row(p->head_dim) + 1) * sizeof(float);
    if ((size_t)max_splits > workspace_bytes / per_split)
        max_splits = (int64_t)(workspace_bytes / per_split);
    return max_splits < 1 ? 1 : (int)max_splits;
}

template <int DS, bool Q8, bool ELEM, bool PAGED>
void launch(vl_cuda_ctx *c, const vl_attn_params *p, size_t workspace_bytes, float *ws,
            cudaStream_t stream) {
    const int group = p->n_heads / p->n_kv_heads, tiles = head_tiles(group);
    const int n_seq = PAGED && p->batch ? (int)p->n_q : 1;
    if (ws == NULL) workspace_bytes = 0;
    const int max_splits = max_splits_of<DS, Q8, ELEM>(c, p, workspace_bytes, n_seq);
    /* also the paged kernel's opt-in to its shared memory (once per backend and kernel) */
    const int per_sm = vl_cuda_ctas_per_sm(c, (const void *)attn_decode_kernel<DS, Q8, ELEM, PAGED>,
                                           kThreads, Decode<DS, Q8>::kSmem);
    /* An explicit length: exactly the plan's splits, a CTA each. A runtime length: slots for the
     * most splits any length up to the bound can have (split_plan never exceeds n_keys /
     * kMinSplitKeys), walked by at most one wave of CTAs (attn_decode_kernel). */
    int n_slots, n_ctas;
    if (p->n_past_dev == NULL) {
        int64_t n_keys = p->n_kv;
        if (p->causal && p->q_pos0 + 1 < n_keys) n_keys = p->q_pos0 + 1;
        n_slots = n_ctas = split_plan((int)n_keys, max_splits).splits;
    } else {
        int64_t most = p->n_kv / kMinSplitKeys;
        if (most > max_splits) most = max_splits;
        n_slots = most < 1 ? 1 : (int)most;
        const int64_t wave = (int64_t)c->cfg.attn_decode_waves * per_sm * c->sm_count /
                             ((int64_t)p->n_kv_heads * tiles * n_seq);
        n_ctas = wave < 1 ? 1 : wave < n_slots ? (int)wave : n_slots;
    }
    VL_CUDA_REQUIRE(n_slots == 1 || ((uintptr_t)ws & 15u) == 0,
                    "attention decode: the workspace must be 16-byte aligned");
    dim3 grid((unsigned)n_ctas, (unsigned)p->n_kv_heads, (unsigned)(tiles * n_seq));
    /* the tail combine's counters: the GEMV's (zero between launches; one stream orders them) */
    int *counters = c->cfg.attn_decode_tail && n_slots > 1 &&
                            grid.y * grid.z <= (uint64_t)c->gemv.n_tile_counters
                        ? c->gemv.tile_counters
                        : nullptr;
    attn_decode_kernel<DS, Q8, ELEM, PAGED>
        <<<grid, kThreads, Decode<DS, Q8>::kSmem, stream>>>(*p, max_splits, n_slots, ws, counters);
    VL_CUDA_LAUNCH_CHECK();
    /* n_slots bounds every plan of the launch: with counters and n_slots <= kTailCombineSplits
     * the tail has combined them all */
    if (n_slots > 1 && !(counters && n_slots <= kTailCombineSplits)) {
        /* with pdl, launched while the first kernel runs: its launch hides behind that kernel */
        vl_cuda_launch_pdl(c, attn_decode_combine<PAGED>, dim3((unsigned)(p->n_heads * n_seq)),
                           dim3(kCombineThreads), 0, stream, *p, max_splits, n_slots,
                           (const float *)ws, counters != nullptr);
    }
}

/* The head dim's kernels, contiguous or paged (one branch on the host: the contiguous
 * instantiations are the kernels that ran before pages existed). */
template <int DS, bool Q8, bool ELEM>
void launch_layout(vl_cuda_ctx *c, const vl_attn_params *p, size_t workspace_bytes, float *ws,
                   cudaStream_t stream) {
    if (p->pages.table)
        launch<DS, Q8, ELEM, true>(c, p, workspace_bytes, ws, stream);
    else
        launch<DS, Q8, ELEM, false>(c, p, workspace_bytes, ws, stream);
}

} // namespace

/* Nothing here reads device memory or waits for the device: the call can be captured into a
 * CUDA graph (the kernels read n_past_dev themselves). */
void vl_attn_decode_launch(vl_cuda_ctx *c, const vl_attn_params *p, void *workspace,
                           size_t workspace_bytes, cudaStream_t stream) {
    float *ws = static_cast<float *>(workspace);
    if (!vl_attn_fast_rows(p)) {
        switch (element_dim(p->head_dim)) {
#define VL_ATTN_DECODE_ELEM_CASE(ds)                                                               \
    case ds:                                                                                       \
        if (p->k_scale)                                                                            \
            launch_layout<ds, true, true>(c, p, workspace_bytes, ws, stream);                      \
        else                                                                                       \
            launch_layout<ds, false, true>(c, p, workspace_bytes, ws, stream);                     \
        return;
            VL_ATTN_ELEMENT_DIMS(VL_ATTN_DECODE_ELEM_CASE)
#undef VL_ATTN_DECODE_ELEM_CASE
        }
    }
    switch (p->head_dim) {
#define VL_ATTN_DECODE_CASE(d)                                                                     \
    case d:                                                                                        \
        if (p->k_scale)                                                                            \
            launch_layout<d, true, false>(c, p, workspace_bytes, ws, stream);                      \
        else                                                                                       \
            launch_layout<d, false, false>(c, p, workspace_bytes, ws, stream);                     \
        break;
        VL_ATTN_HEAD_DIMS(VL_ATTN_DECODE_CASE)
#undef VL_ATTN_DECODE_CASE
    default:
        vl_cuda_fatal("vl_attn_decode_launch", __FILE__, __LINE__, "head_dim not compiled");
    }
}
