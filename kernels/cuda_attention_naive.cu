/* cuda_attention_naive.cu: the "eager" attention baseline (--attn naive): scores materialized in
 * fp32, as an unfused framework would run it, in three plain kernels:
 *   1. scores[h, i, j] = scale q_i . k_j (16 x 16 shared-memory tiles), -inf where j is masked;
 *   2. softmax of each row in place (expf, fp32);
 *   3. o[i, h, :] = sum_j p[h, i, j] v_j (16 x 16 tiles), rounded once to bf16.
 * It needs n_heads * n_q * n_kv floats of scratch and reads every score three times: the point
 * is to measure what flash attention saves. Any head_dim, any alignment (scalar loads).
 * With n_past_dev (runtime cache length) the score rows keep the bound n_kv as their length:
 * keys past the real length are masked like future keys (probability exactly 0) and P.V stops
 * at the real length, so the result has the same bits as the call with the length explicit.
 * Leaves out: tensor cores and every other optimization on purpose.
 */
#include "kernels/cuda_attention_mma.cuh"

using namespace vl_attn;

namespace {

constexpr int kTile = 16;

__device__ __forceinline__ float load_bf16(const void *base, int64_t at) {
    return __bfloat162float(static_cast<const bf16 *>(base)[at]);
}

/* grid (key tiles, query tiles, heads), block kTile x kTile: one score per thread. */
__global__ void naive_scores(const vl_attn_params p, float *scores) {
    __shared__ float sq[kTile][kTile + 1], sk[kTile][kTile + 1];
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const int head = (int)blockIdx.z, D = p.head_dim, kv_head = head / (p.n_heads / p.n_kv_heads);
    const int i = (int)blockIdx.y * kTile + ty, j = (int)blockIdx.x * kTile + tx;
    const int j_load = (int)blockIdx.x * kTile + ty; /* the key row this thread stages */
    const KvExtent ext = kv_extent(p);
    float acc = 0.f;
    for (int d0 = 0; d0 < D; d0 += kTile) {
        const int d = d0 + tx;
        sq[ty][tx] = i < p.n_q && d < D
                         ? load_bf16(p.q, (int64_t)i * p.q_stride + (int64_t)head * D + d)
                         : 0.f;
        sk[ty][tx] = j_load < ext.n_kv && d < D
                         ? load_bf16(p.k, (int64_t)j_load * p.kv_tok_stride +
                                              (int64_t)kv_head * p.kv_head_stride + d)
                         : 0.f;
        __syncthreads();
#pragma unroll
        for (int e = 0; e < kTile; e++) acc += sq[ty][e] * sk[tx][e];
        __syncthreads();
    }
    if (i < p.n_q && j < p.n_kv) {
        int lo, hi;
        row_key_range(p, ext, i, &lo, &hi);
        scores[((int64_t)head * p.n_q + i) * p.n_kv + j] =
            j >= lo && j < hi ? acc * p.scale : -INFINITY;
    }
}

/* grid (n_q, heads), 256 threads: one row of scores -> probabilities. */
__global__ void naive_softmax(const vl_attn_params p, float *scores) {
    __shared__ float red[8];
    float *row = scores + ((int64_t)blockIdx.y * p.n_q + blockIdx.x) * p.n_kv;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < p.n_kv; j += 256) mx = fmaxf(mx, row[j]);
    mx = block_reduce<8>(mx, true, red); /* finite: every row sees a key */
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < p.n_kv; j += 256) {
        const float e = expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    sum = block_reduce<8>(sum, false, red);
    const float inv = 1.f / sum;
    for (int64_t j = threadIdx.x; j < p.n_kv; j += 256) row[j] *= inv;
}

/* grid (dim tiles, query tiles, heads), block kTile x kTile: o[i, h, d] = sum_j p[i, j] v[j, d]. */
__global__ void naive_pv(const vl_attn_params p, const float *probs) {
    __shared__ float sp[kTile][kTile + 1], sv[kTile][kTile + 1];
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const int head = (int)blockIdx.z, D = p.head_dim, kv_head = head / (p.n_heads / p.n_kv_heads);
    const int i = (int)blockIdx.y * kTile + ty, d = (int)blockIdx.x * kTile + tx;
    const float *prow = probs + ((int64_t)head * p.n_q + i) * p.n_kv;
    const int64_t v0 = (int64_t)kv_head * p.kv_head_stride;
    const int64_t n_kv = kv_extent(p).n_kv; /* the real length; probs rows have p.n_kv entries */
    float acc = 0.f;
    for (int64_t j0 = 0; j0 < n_kv; j0 += kTile) {
        sp[ty][tx] = i < p.n_q && j0 + tx < n_kv ? prow[j0 + tx] : 0.f;
        sv[ty][tx] =
            j0 + ty < n_kv && d < D ? load_bf16(p.v, v0 + (j0 + ty) * p.kv_tok_stride + d) : 0.f;
        __syncthreads();
#pragma unroll
        for (int e = 0; e < kTile; e++) acc += sp[ty][e] * sv[e][tx];
        __syncthreads();
    }
    if (i < p.n_q && d < D)
        static_cast<bf16 *>(p.o)[(int64_t)i * p.o_stride + (int64_t)head * D + d] =
            __float2bfloat16_rn(acc);
}

} // namespace

void vl_cuda_attention_naive(const vl_attn_params *p, float *scores, cudaStream_t stream) {
    if (p->n_q == 0) return;
    if (p->n_heads <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads != 0 || p->n_kv <= 0 ||
        p->n_heads > 65535 || (p->n_q + kTile - 1) / kTile > 65535)
        vl_cuda_fatal("vl_cuda_attention_naive", __FILE__, __LINE__, "unsupported shape");
    const dim3 block(kTile, kTile);
    const unsigned q_tiles = (unsigned)((p->n_q + kTile - 1) / kTile);
    naive_scores<<<dim3((unsigned)((p->n_kv + kTile - 1) / kTile), q_tiles, (unsigned)p->n_heads),
                   block, 0, stream>>>(*p, scores);
    VL_CUDA_LAUNCH_CHECK();
    naive_softmax<<<dim3((unsigned)p->n_q, (unsigned)p->n_heads), 256, 0, stream>>>(*p, scores);
    VL_CUDA_LAUNCH_CHECK();
    naive_pv<<<dim3((unsigned)((p->head_dim + kTile - 1) / kTile), q_tiles, (unsigned)p->n_heads),
               block, 0, stream>>>(*p, scores);
    VL_CUDA_LAUNCH_CHECK();
}
