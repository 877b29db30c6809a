/* attn_decode.cu: attention of one new token over the KV cache (n_q == 1), split over the keys
 * (flash-decoding), bf16 in and out, fp32 softmax and accumulation.
 *
 * Version 1:
 *   - Grid (splits, kv heads, ceil(group / 16)). A CTA takes one kv head, the (up to 16) query
 *     heads that share it and one contiguous range of keys, so every K/V byte is read once: the
 *     7 query heads of a Qwen2 kv head are the 7 rows of one m16 tile, and the scores and P.V
 *     run on tensor cores like the prefill kernel (9 of 16 rows idle costs nothing: decode is
 *     bound by memory, not math).
 *   - Each of the 4 warps streams its own 16-key steps (steps w, w + 4, ...) through a private
 *     two-stage cp.async ring, so the main loop needs no CTA barrier; at the end the warps merge
 *     their (max, sum, o) through shared memory.
 *   - A split writes its normalized o and log2-sum-exp per head to the workspace (fp32); a
 *     second small kernel weighs the splits by 2^(lse - max lse) and writes bf16 o. With one
 *     split the first kernel writes o directly.
 *   - Splits: about 2 CTAs per SM, each split at least kMinSplitKeys keys, at most kMaxSplits,
 *     and no more than the workspace holds (one split needs none).
 * Leaves out: more than one query per call (n_q > 1 goes to the prefill kernel), paged caches,
 * quantized K/V.
 */
#include "kernels/attn_mma.cuh"

#include <stdlib.h>

using namespace vl_attn;

namespace {

constexpr int kMinSplitKeys = 256; /* below this a split's fixed cost outweighs its keys */

template <int D> struct Decode {
    static constexpr int kKeys = 16;                    /* keys per warp step */
    static constexpr int kStages = 2;                   /* cp.async ring depth per warp */
    static constexpr int kLD = D + 8;                   /* shared row stride, elements */
    static constexpr int kStageElems = 2 * kKeys * kLD; /* K rows, then V rows */
    static constexpr int kWarpElems = kStages * kStageElems;
    static constexpr int kSmem = (16 * kLD + kWarps * kWarpElems) * (int)sizeof(bf16);
    static constexpr int kSO = D + 4; /* row stride of the fp32 merge buffer (spreads banks) */
    static_assert(D % 16 == 0, "head_dim must be a multiple of 16");
    static_assert(16 * kSO * sizeof(float) <= kWarpElems * sizeof(bf16),
                  "the merge buffer reuses a warp's ring");
    static_assert(kSmem <= 99 * 1024, "a CTA must fit the 99 KB of sm_86 and sm_89");
};

/* cp.async of this warp's step: keys [key0, key0 + 16) of K and V into one ring stage; keys at
 * or past key_end are zero-filled. */
template <int D>
__device__ __forceinline__ void load_step(bf16 *sk, const bf16 *k, const bf16 *v, int64_t stride,
                                          int key0, int key_end, int lane) {
    constexpr int kLD = Decode<D>::kLD, kChunks = D / 8;
    bf16 *sv = sk + 16 * kLD;
#pragma unroll
    for (int it = 0; it < 16 * kChunks / 32; it++) {
        const int c = it * 32 + lane, r = c / kChunks, col = (c % kChunks) * 8;
        const bool valid = key0 + r < key_end;
        const int64_t off = valid ? (int64_t)(key0 + r) * stride + col : 0;
        cp_async16(smem_u32(sk + r * kLD + col), k + off, valid);
        cp_async16(smem_u32(sv + r * kLD + col), v + off, valid);
    }
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attn_decode_kernel(const vl_attn_params p, int chunk, float *ws) {
    using C = Decode<D>;
    constexpr int kLD = C::kLD, kStages = C::kStages;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem); /* [16][kLD]: the query heads, zero rows after */
    __shared__ float s_m[kWarps][16], s_l[kWarps][16];

    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int gid = lane / 4, tig = lane % 4;
    bf16 *ring = sQ + 16 * kLD + warp * C::kWarpElems;
    const int split = (int)blockIdx.x, kv_head = (int)blockIdx.y;
    const int group = p.n_heads / p.n_kv_heads;
    const int n_rows = min(16, group - 16 * (int)blockIdx.z);
    const int head0 = kv_head * group + 16 * (int)blockIdx.z;
    int key_end = (int)p.n_kv;
    if (p.causal && p.q_pos0 + 1 < key_end) key_end = (int)(p.q_pos0 + 1);
    const int kb = split * chunk, ke = min(kb + chunk, key_end); /* kb < ke (launcher) */
    const bf16 *q = static_cast<const bf16 *>(p.q) + (int64_t)head0 * D;
    const bf16 *k = static_cast<const bf16 *>(p.k) + (int64_t)kv_head * p.kv_head_stride;
    const bf16 *v = static_cast<const bf16 *>(p.v) + (int64_t)kv_head * p.kv_head_stride;

    constexpr int kChunks = D / 8;
    for (int c = (int)threadIdx.x; c < 16 * kChunks; c += kThreads) {
        const int r = c / kChunks, col = (c % kChunks) * 8;
        const bool valid = r < n_rows;
        cp_async16(smem_u32(sQ + r * kLD + col), valid ? q + r * D + col : q, valid);
    }
    cp_async_commit();

    const int n_steps = (ke - kb + 15) / 16;
    const int my_steps = warp < n_steps ? (n_steps - warp + kWarps - 1) / kWarps : 0;
#pragma unroll
    for (int j = 0; j < kStages - 1; j++) {
        if (j < my_steps)
            load_step<D>(ring + (j % kStages) * C::kStageElems, k, v, p.kv_tok_stride,
                         kb + (warp + kWarps * j) * 16, ke, lane);
        cp_async_commit(); /* empty groups keep the wait counts uniform */
    }
    cp_async_wait<kStages - 1>();
    __syncthreads(); /* the Q rows every thread copied have landed */

    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;
    const int b_row = (lane & 7) + (lane >> 4) * 8, b_col = ((lane >> 3) & 1) * 8;
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        ldmatrix_x4(qa[kk], smem_u32(sQ) + (uint32_t)((a_row * kLD + kk * 16 + a_col) * 2));

    float o[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const float scale_log2 = p.scale * 1.4426950408889634f;

    for (int j = 0; j < my_steps; j++) {
        const int jn = j + kStages - 1;
        if (jn < my_steps)
            load_step<D>(ring + (jn % kStages) * C::kStageElems, k, v, p.kv_tok_stride,
                         kb + (warp + kWarps * jn) * 16, ke, lane);
        cp_async_commit();
        cp_async_wait<kStages - 1>();
        __syncwarp(); /* the other lanes' copies of step j are visible */

        const uint32_t k_st = smem_u32(ring + (j % kStages) * C::kStageElems);
        const uint32_t v_st = k_st + 16 * kLD * (uint32_t)sizeof(bf16);
        const int key0 = kb + (warp + kWarps * j) * 16;
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t b[4];
            ldmatrix_x4(b, k_st + (uint32_t)((b_row * kLD + kk * 16 + b_col) * 2));
            mma_bf16(s[0], qa[kk], b[0], b[1]);
            mma_bf16(s[1], qa[kk], b[2], b[3]);
        }
        if (key0 + 16 > ke) /* the split's last step: keys past its end are zeros */
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (key0 + nt * 8 + 2 * tig + (e & 1) >= ke) s[nt][e] = -INFINITY;

#pragma unroll
        for (int half = 0; half < 2; half++) {
            float mx = fmaxf(m[half], fmaxf(fmaxf(s[0][2 * half], s[0][2 * half + 1]),
                                            fmaxf(s[1][2 * half], s[1][2 * half + 1])));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float base = mx == -INFINITY ? 0.f : mx * scale_log2;
            const float alpha = exp2_approx(m[half] * scale_log2 - base);
            m[half] = mx;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                o[dt][2 * half] *= alpha;
                o[dt][2 * half + 1] *= alpha;
            }
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float pe = exp2_approx(fmaf(s[nt][2 * half + e], scale_log2, -base));
                    s[nt][2 * half + e] = pe;
                    sum += pe;
                }
            l[half] = l[half] * alpha + sum;
        }
        const uint32_t pa[4] = {pack_bf16(s[0][0], s[0][1]), pack_bf16(s[0][2], s[0][3]),
                                pack_bf16(s[1][0], s[1][1]), pack_bf16(s[1][2], s[1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, v_st + (uint32_t)((a_row * kLD + dp * 16 + a_col) * 2));
            mma_bf16(o[2 * dp], pa, b[0], b[1]);
            mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
        }
        __syncwarp(); /* every lane is done with this stage before it is refilled */
    }
    cp_async_wait<0>();
    __syncwarp();

    /* merge the 4 warps: each leaves its unnormalized o in its own ring, max and sum beside */
    float *so = reinterpret_cast<float *>(ring);
#pragma unroll
    for (int half = 0; half < 2; half++) {
        float sum = l[half];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int r = gid + 8 * half;
        if (tig == 0) s_m[warp][r] = m[half], s_l[warp][r] = sum;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++)
            *reinterpret_cast<float2 *>(so + r * C::kSO + dt * 8 + 2 * tig) =
                make_float2(o[dt][2 * half], o[dt][2 * half + 1]);
    }
    __syncthreads();

    const bool single = gridDim.x == 1; /* then ws may be NULL */
    for (int idx = (int)threadIdx.x; idx < n_rows * D; idx += kThreads) {
        const int r = idx / D, d = idx % D;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarps; w++) mx = fmaxf(mx, s_m[w][r]);
        float wl = 0.f, acc = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; w++) {
            /* a warp without keys has max -inf and contributes nothing */
            const float f =
                s_m[w][r] == -INFINITY ? 0.f : exp2_approx((s_m[w][r] - mx) * scale_log2);
            const float *wo = reinterpret_cast<const float *>(sQ + 16 * kLD + w * C::kWarpElems);
            wl += f * s_l[w][r];
            acc += f * wo[r * C::kSO + d];
        }
        const float out = wl > 0.f ? acc / wl : 0.f;
        if (single) {
            static_cast<bf16 *>(p.o)[(int64_t)(head0 + r) * D + d] = __float2bfloat16_rn(out);
        } else {
            const int64_t at = (int64_t)split * p.n_heads + head0 + r;
            ws[at * D + d] = out;
            if (d == 0) /* the log2-sum-exps follow the outputs of all splits */
                ws[(int64_t)gridDim.x * p.n_heads * D + at] =
                    wl > 0.f ? mx * scale_log2 + log2f(wl) : -INFINITY;
        }
    }
}

/* Block-wide max (is_max) or sum of x over kThreads threads; red: kWarps floats of shared. */
__device__ float block_reduce(float x, bool is_max, float *red) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
        float y = __shfl_xor_sync(0xffffffffu, x, off);
        x = is_max ? fmaxf(x, y) : x + y;
    }
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    x = red[0];
#pragma unroll
    for (int w = 1; w < kWarps; w++) x = is_max ? fmaxf(x, red[w]) : x + red[w];
    __syncthreads(); /* red may be reused */
    return x;
}

/* o[head] = sum_s 2^(lse_s - max) o_s / sum_s 2^(lse_s - max); one CTA per query head. */
__global__ void __launch_bounds__(kThreads)
    attn_decode_combine(const vl_attn_params p, int n_splits, const float *ws) {
    __shared__ float s_w[kMaxSplits], s_red[kWarps];
    const int head = (int)blockIdx.x, D = p.head_dim, H = p.n_heads;
    const float *lse = ws + (int64_t)n_splits * H * D;
    float mx = -INFINITY;
    for (int s = (int)threadIdx.x; s < n_splits; s += kThreads) mx = fmaxf(mx, lse[s * H + head]);
    mx = block_reduce(mx, true, s_red); /* finite: split 0 always has keys */
    float sum = 0.f;
    for (int s = (int)threadIdx.x; s < n_splits; s += kThreads) {
        const float x = lse[s * H + head];
        const float w = x == -INFINITY ? 0.f : exp2_approx(x - mx);
        s_w[s] = w;
        sum += w;
    }
    sum = block_reduce(sum, false, s_red); /* its barriers also publish s_w */
    const float inv = 1.f / sum;
    bf16 *out = static_cast<bf16 *>(p.o) + (int64_t)head * D;
    for (int d = (int)threadIdx.x; d < D; d += kThreads) {
        float acc = 0.f;
        for (int s = 0; s < n_splits; s++) acc += s_w[s] * ws[((int64_t)s * H + head) * D + d];
        out[d] = __float2bfloat16_rn(acc * inv);
    }
}

int sm_count(void) {
    static const int n = [] {
        int dev = 0, count = 0;
        VL_CUDA_CHECK(cudaGetDevice(&dev));
        VL_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev));
        return count > 0 ? count : 1;
    }();
    return n;
}

/* VL_ATTN_DECODE_SPLITS=N: the split count before the length and workspace caps, for
 * benchmarking only. */
int forced_splits(void) {
    static const int n = [] {
        const char *e = getenv("VL_ATTN_DECODE_SPLITS");
        return e ? atoi(e) : 0;
    }();
    return n;
}

template <int D>
void launch(const vl_attn_params *p, int64_t n_keys, int64_t splits, float *ws,
            cudaStream_t stream) {
    using C = Decode<D>;
    static const bool opted_in = [] {
        VL_CUDA_CHECK(cudaFuncSetAttribute(attn_decode_kernel<D>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmem));
        return true;
    }();
    (void)opted_in;
    /* whole 4-warp rounds per split, then drop splits the rounding left empty */
    const int64_t round = kWarps * C::kKeys;
    int64_t chunk = (n_keys + splits - 1) / splits;
    chunk = (chunk + round - 1) / round * round;
    splits = (n_keys + chunk - 1) / chunk;
    const int group = p->n_heads / p->n_kv_heads;
    dim3 grid((unsigned)splits, (unsigned)p->n_kv_heads, (unsigned)((group + 15) / 16));
    attn_decode_kernel<D><<<grid, kThreads, C::kSmem, stream>>>(*p, (int)chunk, ws);
    VL_CUDA_LAUNCH_CHECK();
    if (splits > 1) {
        attn_decode_combine<<<(unsigned)p->n_heads, kThreads, 0, stream>>>(*p, (int)splits, ws);
        VL_CUDA_LAUNCH_CHECK();
    }
}

} // namespace

void vl_attn_decode_launch(const vl_attn_params *p, void *workspace, size_t workspace_bytes,
                           cudaStream_t stream) {
    int64_t n_keys = p->n_kv;
    if (p->causal && p->q_pos0 + 1 < n_keys) n_keys = p->q_pos0 + 1;
    const int group = p->n_heads / p->n_kv_heads;
    const int64_t ctas = (int64_t)p->n_kv_heads * ((group + 15) / 16);
    int64_t splits = (2 * (int64_t)sm_count() + ctas - 1) / ctas;
    if (forced_splits() > 0) splits = forced_splits();
    if (splits > n_keys / kMinSplitKeys) splits = n_keys / kMinSplitKeys;
    if (splits > kMaxSplits) splits = kMaxSplits;
    const size_t per_split = (size_t)p->n_heads * (size_t)(p->head_dim + 1) * sizeof(float);
    if (workspace == NULL) workspace_bytes = 0;
    if ((size_t)splits > workspace_bytes / per_split)
        splits = (int64_t)(workspace_bytes / per_split);
    if (splits < 1) splits = 1;
    float *ws = static_cast<float *>(workspace);
    switch (p->head_dim) {
    case 64:
        launch<64>(p, n_keys, splits, ws, stream);
        break;
    case 80:
        launch<80>(p, n_keys, splits, ws, stream);
        break;
    case 96:
        launch<96>(p, n_keys, splits, ws, stream);
        break;
    case 128:
        launch<128>(p, n_keys, splits, ws, stream);
        break;
    default:
        vl_cuda_fatal("vl_attn_decode_launch", __FILE__, __LINE__, "head_dim not compiled");
    }
}
