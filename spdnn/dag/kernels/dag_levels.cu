// Dependency-group kernels for sparse networks of arbitrary structure (spdnn.dag.cuda).
//
// Values are node-major: values[slot * ld + j] is a node's value for input vector j
// (ld = padded batch width, a multiple of 4). Nodes are in layout order, so a dependency
// group is nodes lo .. hi - 1; node r's incoming edges are indptr[r] .. indptr[r + 1] of src
// (the value slots of nodes of earlier groups) and w, and node r writes slot dst[r]. Slots
// are reused once no later node reads them (spdnn/dag/liveness.py); dst[r] = r and src =
// source rows when nothing is freed. A node computes act(bias + sum w * value[src]).
//
// dag_thread: one thread per neuron and input vector (the paper's design, Gajurel et al.
//   2020): grid.x covers the group's nodes, grid.y the input vectors. Neighbouring threads
//   read different source rows, so the value loads do not coalesce.
// dag_warp<VEC>: a group of TPN = LB * LE lanes per neuron and tile of input vectors. LB
//   lanes run along the batch (each VEC consecutive vectors, float4 loads when VEC = 4),
//   so the lanes reading one source row read LB * VEC * 4 contiguous bytes; LE lanes split
//   the node's incoming edges (for nodes with many inputs and for small batches) and are
//   summed with warp shuffles. grid.y covers the tiles of LB * VEC input vectors. One
//   launch may run several consecutive small groups (levels l0 .. l1 - 1) in one block per
//   tile, with __syncthreads() between groups (the host launches such segments with
//   gridDim.x == 1 only).
// dag_gather: copy the output nodes' rows into a dense block for the host.

#define CLIP_AT 32.0f

__device__ __forceinline__ float activate(float z, int code) {
    switch (code) {
        case 1: return fmaxf(z, 0.0f);                      // relu
        case 2: return fminf(fmaxf(z, 0.0f), CLIP_AT);      // relu_clip
        case 3: return 1.0f / (1.0f + expf(-z));            // sigmoid
        case 4: return tanhf(z);                            // tanh
        case 5: return fminf(fmaxf(z, 0.0f), 1.0f);         // relu_clip1
        default: return z;                                  // identity
    }
}

extern "C" __global__ void dag_thread(float* values, int ld, int lo, int hi,
                                      const int* __restrict__ indptr, const int* __restrict__ src,
                                      const float* __restrict__ w, const float* __restrict__ bias,
                                      const signed char* __restrict__ act, const int* __restrict__ dst) {
    const int node = lo + blockIdx.x * blockDim.x + threadIdx.x;
    if (node >= hi) return;
    const size_t col = blockIdx.y;
    float acc = 0.0f;
    const int end = indptr[node + 1];
    for (int e = indptr[node]; e < end; ++e) acc = fmaf(w[e], values[(size_t)src[e] * ld + col], acc);
    values[(size_t)dst[node] * ld + col] = activate(acc + bias[node], act[node]);
}

template <int VEC> struct Lanes;
template <> struct Lanes<1> {
    static __device__ __forceinline__ void load(const float* p, float (&v)[1]) { v[0] = *p; }
    static __device__ __forceinline__ void store(float* p, const float (&v)[1]) { *p = v[0]; }
};
template <> struct Lanes<4> {
    static __device__ __forceinline__ void load(const float* p, float (&v)[4]) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
    }
    static __device__ __forceinline__ void store(float* p, const float (&v)[4]) {
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    }
};

template <int VEC>
__device__ __forceinline__ void dag_warp_body(float* values, int ld, const int* __restrict__ level_ptr, int l0, int l1,
                                              int log_lb, int log_le, int block, int blocks,
                                              const int* __restrict__ indptr,
                                              const int* __restrict__ src, const float* __restrict__ w,
                                              const float* __restrict__ bias, const signed char* __restrict__ act,
                                              const int* __restrict__ dst) {
    const int log_tpn = log_lb + log_le;
    const int tpn = 1 << log_tpn;
    const int le = 1 << log_le;
    const int lane = threadIdx.x & 31;
    const int lig = lane & (tpn - 1);              // lane in its group
    const int b_lane = lig & ((1 << log_lb) - 1);  // position along the batch
    const int e_lane = lig >> log_lb;              // share of the edges
    const int per_warp = 32 >> log_tpn;            // neurons per warp at a time
    const int warps = blockDim.x >> 5;
    const int first = (block * warps + (threadIdx.x >> 5)) * per_warp + (lane >> log_tpn);
    const int stride = blocks * warps * per_warp;
    const size_t col = ((size_t)blockIdx.y * (1u << log_lb) + b_lane) * VEC;
    for (int l = l0; l < l1; ++l) {
        const int lo = level_ptr[l], hi = level_ptr[l + 1];
        // the trip count is the same for every lane of a warp (the shuffles below need all 32)
        for (int base = lo + first - (lane >> log_tpn); base < hi; base += stride) {
            const int node = base + (lane >> log_tpn);
            float acc[VEC];
#pragma unroll
            for (int k = 0; k < VEC; ++k) acc[k] = 0.0f;
            if (node < hi) {
                const int end = indptr[node + 1];
                int e = indptr[node] + e_lane;
                for (; e + 3 * le < end; e += 4 * le) {  // four independent loads in flight
                    const int s0 = src[e], s1 = src[e + le], s2 = src[e + 2 * le], s3 = src[e + 3 * le];
                    const float w0 = w[e], w1 = w[e + le], w2 = w[e + 2 * le], w3 = w[e + 3 * le];
                    float v0[VEC], v1[VEC], v2[VEC], v3[VEC];
                    Lanes<VEC>::load(values + (size_t)s0 * ld + col, v0);
                    Lanes<VEC>::load(values + (size_t)s1 * ld + col, v1);
                    Lanes<VEC>::load(values + (size_t)s2 * ld + col, v2);
                    Lanes<VEC>::load(values + (size_t)s3 * ld + col, v3);
#pragma unroll
                    for (int k = 0; k < VEC; ++k) {
                        acc[k] = fmaf(w0, v0[k], acc[k]);
                        acc[k] = fmaf(w1, v1[k], acc[k]);
                        acc[k] = fmaf(w2, v2[k], acc[k]);
                        acc[k] = fmaf(w3, v3[k], acc[k]);
                    }
                }
                for (; e < end; e += le) {
                    float v[VEC];
                    Lanes<VEC>::load(values + (size_t)src[e] * ld + col, v);
                    const float wt = w[e];
#pragma unroll
                    for (int k = 0; k < VEC; ++k) acc[k] = fmaf(wt, v[k], acc[k]);
                }
            }
            for (int off = 1 << log_lb; off < tpn; off <<= 1) {
#pragma unroll
                for (int k = 0; k < VEC; ++k) acc[k] += __shfl_xor_sync(0xffffffffu, acc[k], off);
            }
            if (node < hi && e_lane == 0) {
                const float b = bias[node];
                const int code = act[node];
#pragma unroll
                for (int k = 0; k < VEC; ++k) acc[k] = activate(acc[k] + b, code);
                Lanes<VEC>::store(values + (size_t)dst[node] * ld + col, acc);
            }
        }
        if (l + 1 < l1) __syncthreads();  // the next group reads what this one wrote
    }
}

#define DAG_WARP_ARGS float *values, int ld, const int *level_ptr, int l0, int l1, int log_lb, int log_le, \
    const int *indptr, const int *src, const float *w, const float *bias, const signed char *act, const int *dst

extern "C" __global__ void __launch_bounds__(1024) dag_warp1(DAG_WARP_ARGS) {
    dag_warp_body<1>(values, ld, level_ptr, l0, l1, log_lb, log_le, blockIdx.x, gridDim.x, indptr, src, w, bias, act, dst);
}

extern "C" __global__ void __launch_bounds__(1024) dag_warp4(DAG_WARP_ARGS) {
    dag_warp_body<4>(values, ld, level_ptr, l0, l1, log_lb, log_le, blockIdx.x, gridDim.x, indptr, src, w, bias, act, dst);
}

// dag_population<VEC>: a population of small networks in one launch (spdnn.dag.population_cuda).
// Rows are member-major (population.blocked): the shared inputs, then each member's rows in its
// own level order. Block (m, tile) runs member m alone over one tile of input vectors, walking
// its groups level_ptr[member_levels[m]] .. with __syncthreads() between them; the members are
// independent, so no block waits for another.
#define DAG_POPULATION_ARGS float *values, int ld, const int *level_ptr, const int *member_levels, int log_lb, \
    int log_le, const int *indptr, const int *src, const float *w, const float *bias, const signed char *act, \
    const int *dst

extern "C" __global__ void __launch_bounds__(1024) dag_population1(DAG_POPULATION_ARGS) {
    const int m = blockIdx.x;
    dag_warp_body<1>(values, ld, level_ptr, member_levels[m], member_levels[m + 1] - 1, log_lb, log_le, 0, 1,
                     indptr, src, w, bias, act, dst);
}

extern "C" __global__ void __launch_bounds__(1024) dag_population4(DAG_POPULATION_ARGS) {
    const int m = blockIdx.x;
    dag_warp_body<4>(values, ld, level_ptr, member_levels[m], member_levels[m + 1] - 1, log_lb, log_le, 0, 1,
                     indptr, src, w, bias, act, dst);
}

extern "C" __global__ void dag_gather(const float* values, int ld, const int* __restrict__ rows, int nrows, float* out) {
    const size_t total = (size_t)nrows * ld;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t j = i / ld;
        out[i] = values[(size_t)rows[j] * ld + (i - j * ld)];
    }
}
