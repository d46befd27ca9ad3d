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
// dag_walk<VEC>: one block per tile of input vectors walks a run of small groups (one segment per
//   blockIdx.y: a run of one network's levels, or one member of a population) with one barrier per
//   group, reading values from shared memory instead of global memory (see dag_walk_body below).
// dag_lane: one thread per input vector, LANE_WARPS warps sharing a block's 32 vectors, walks a run of
//   groups following a stream the host built, one barrier a group (see dag_lane below): for deep,
//   narrow networks.
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

// One lane's share of a node's sum: edges begin, begin + le, ... before end, fmaf in edge order
// from 0, four loads in flight. edge(e, v) loads edge e's source values into v and returns its
// weight. Every warp-style kernel sums through here, so the same LE gives the same bits.
template <int VEC, class Edge>
__device__ __forceinline__ void lane_sum(float (&acc)[VEC], int begin, int end, int le, Edge edge) {
    int e = begin;
    for (; e + 3 * le < end; e += 4 * le) {
        float v0[VEC], v1[VEC], v2[VEC], v3[VEC];
        const float w0 = edge(e, v0), w1 = edge(e + le, v1), w2 = edge(e + 2 * le, v2), w3 = edge(e + 3 * le, v3);
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
        const float wt = edge(e, v);
#pragma unroll
        for (int k = 0; k < VEC; ++k) acc[k] = fmaf(wt, v[k], acc[k]);
    }
}

// The LE partial sums of a node's lanes added by a butterfly (every lane of the warp takes part).
template <int VEC>
__device__ __forceinline__ void lane_reduce(float (&acc)[VEC], int log_lb, int tpn) {
    for (int off = 1 << log_lb; off < tpn; off <<= 1) {
#pragma unroll
        for (int k = 0; k < VEC; ++k) acc[k] += __shfl_xor_sync(0xffffffffu, acc[k], off);
    }
}

// The warp-style walk of groups l0 .. l1 - 1 (a block barrier between them): each node's sum over
// its edges (lane_sum, load(e, col, b_lane, v) giving edge e's source values and weight), the
// butterfly, bias and activation, then store(node, col, b_lane, acc). dag_warp_body reads and
// writes global rows; dag_ring_body (dag_population_ring) a shared-memory ring as well.
template <int VEC, class Load, class Store>
__device__ __forceinline__ void dag_levels_body(const int* __restrict__ level_ptr, int l0, int l1, int log_lb,
                                                int log_le, int block, int blocks, const int* __restrict__ indptr,
                                                const float* __restrict__ bias, const signed char* __restrict__ act,
                                                Load load, Store store) {
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
            if (node < hi)
                lane_sum<VEC>(acc, indptr[node] + e_lane, indptr[node + 1], le,
                              [&](int e, float (&v)[VEC]) { return load(e, col, b_lane, v); });
            lane_reduce<VEC>(acc, log_lb, tpn);
            if (node < hi && e_lane == 0) {
                const float b = bias[node];
                const int code = act[node];
#pragma unroll
                for (int k = 0; k < VEC; ++k) acc[k] = activate(acc[k] + b, code);
                store(node, col, b_lane, acc);
            }
        }
        if (l + 1 < l1) __syncthreads();  // the next group reads what this one wrote
    }
}

template <int VEC>
__device__ __forceinline__ void dag_warp_body(float* values, int ld, const int* __restrict__ level_ptr, int l0, int l1,
                                              int log_lb, int log_le, int block, int blocks,
                                              const int* __restrict__ indptr,
                                              const int* __restrict__ src, const float* __restrict__ w,
                                              const float* __restrict__ bias, const signed char* __restrict__ act,
                                              const int* __restrict__ dst) {
    dag_levels_body<VEC>(
        level_ptr, l0, l1, log_lb, log_le, block, blocks, indptr, bias, act,
        [&](int e, size_t col, int, float (&v)[VEC]) {
            Lanes<VEC>::load(values + (size_t)src[e] * ld + col, v);
            return w[e];
        },
        [&](int node, size_t col, int, const float (&acc)[VEC]) {
            Lanes<VEC>::store(values + (size_t)__ldg(dst + node) * ld + col, acc);
        });
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
// The population kernels' launch bounds are build constants: PopulationCudaEngine(min_blocks=k)
// builds them for k blocks of its block size an SM (47 registers a thread at VEC 4 allow 2 blocks of
// 512 threads; 32 allow 4), since a member's walk waits on each group's loads and more resident
// blocks hide that wait. Registers only: the same sums in the same order, the same bits.
#ifndef POPULATION_THREADS
#define POPULATION_THREADS 1024
#endif
#ifndef POPULATION_MIN_BLOCKS
#define POPULATION_MIN_BLOCKS 1
#endif
#define POPULATION_BOUNDS __launch_bounds__(POPULATION_THREADS, POPULATION_MIN_BLOCKS)

#define DAG_POPULATION_ARGS float *values, int ld, const int *level_ptr, const int *member_levels, int log_lb, \
    int log_le, const int *indptr, const int *src, const float *w, const float *bias, const signed char *act, \
    const int *dst

extern "C" __global__ void POPULATION_BOUNDS dag_population1(DAG_POPULATION_ARGS) {
    const int m = blockIdx.x;
    dag_warp_body<1>(values, ld, level_ptr, member_levels[m], member_levels[m + 1] - 1, log_lb, log_le, 0, 1,
                     indptr, src, w, bias, act, dst);
}

extern "C" __global__ void POPULATION_BOUNDS dag_population4(DAG_POPULATION_ARGS) {
    const int m = blockIdx.x;
    dag_warp_body<4>(values, ld, level_ptr, member_levels[m], member_levels[m + 1] - 1, log_lb, log_le, 0, 1,
                     indptr, src, w, bias, act, dst);
}

// dag_population_ring<VEC>: dag_population with the member's last ring_rows rows of the block's
// tile in shared memory (tables: spdnn.dag.population_ring). src[e] >= 0 is a global row, as in
// dag_population; src[e] = -(slot + 1) is ring slot `slot` (the source row % ring_rows), written
// in an earlier group and displaced only after the reader's group ends (the tables' rule), so the
// barrier between groups orders every ring read after its write and before its overwrite. A node's
// value goes to its ring slot, and to global row dst[node] only where dst[node] >= 0 (a far read or
// an output needs it). The walk is dag_warp_body's (dag_levels_body): the same sums, the same bits.
// Measured 2026-12-06 (docs/dag.md): bit for bit the default, and no faster.
template <int VEC>
__device__ __forceinline__ void dag_ring_body(float* values, int ld, const int* __restrict__ level_ptr, int l0, int l1,
                                              int log_lb, int log_le, const int* __restrict__ indptr,
                                              const int* __restrict__ src, const float* __restrict__ w,
                                              const float* __restrict__ bias, const signed char* __restrict__ act,
                                              const int* __restrict__ dst, int ring_rows) {
    extern __shared__ float4 ring_smem4[];
    float* ring = reinterpret_cast<float*>(ring_smem4);
    const int tile = (1 << log_lb) * VEC;  // the block's vectors: one ring row
    dag_levels_body<VEC>(
        level_ptr, l0, l1, log_lb, log_le, 0, 1, indptr, bias, act,
        [&](int e, size_t col, int b_lane, float (&v)[VEC]) {
            const int s = src[e];
            if (s >= 0)
                Lanes<VEC>::load(values + (size_t)s * ld + col, v);
            else
                Lanes<VEC>::load(ring + (size_t)(-s - 1) * tile + b_lane * VEC, v);
            return w[e];
        },
        [&](int node, size_t col, int b_lane, const float (&acc)[VEC]) {
            Lanes<VEC>::store(ring + (size_t)(node % ring_rows) * tile + b_lane * VEC, acc);
            const int d = __ldg(dst + node);
            if (d >= 0) Lanes<VEC>::store(values + (size_t)d * ld + col, acc);
        });
}

extern "C" __global__ void POPULATION_BOUNDS dag_population_ring1(DAG_POPULATION_ARGS, int ring_rows) {
    const int m = blockIdx.x;
    dag_ring_body<1>(values, ld, level_ptr, member_levels[m], member_levels[m + 1] - 1, log_lb, log_le, indptr, src,
                     w, bias, act, dst, ring_rows);
}

extern "C" __global__ void POPULATION_BOUNDS dag_population_ring4(DAG_POPULATION_ARGS, int ring_rows) {
    const int m = blockIdx.x;
    dag_ring_body<4>(values, ld, level_ptr, member_levels[m], member_levels[m + 1] - 1, log_lb, log_le, indptr, src,
                     w, bias, act, dst, ring_rows);
}

// ----------------------------------------------------------------------------- dag_walk
// Written for deep, narrow networks, where each group is a few nodes and dag_warp's fused segments
// pay per group a chain of dependent global loads (group bounds -> indptr -> src -> values) and a
// 1024-thread barrier: dag_walk keeps the chain on chip. On an H200 that did not make a group
// cheaper (about 2 us either way at 4 vectors a lane: docs/dag.md), so it runs only when asked
// for. Its tables come from spdnn.dag.cuda.walk_tables:
// * ring: the values of the last K rows (K = ring_rows) of the segment for the block's tile, in
//   shared memory; row r lives at ring[(r % K) * tile]. An edge whose source row s is in the
//   segment and s + K >= the end of the reader's group (so no row written up to then reused its
//   place) reads the ring: its code is s % K >= 0.
// * every other source is "far": written before the launch, or in a group at least depth + 1
//   groups before its reader. Its values are copied (cp.async) into a staging buffer `depth`
//   groups ahead of the reader; code -(f + 1) reads entry f of the reader group's far list.
// * the structure of a group (node records, edge records, far slots) is copied into shared
//   memory 2 * depth groups ahead, so after the barrier a group reads nothing from global memory.
// Iteration g: wait for the copies issued at g - depth (far values of g, structure of g + depth),
// barrier, issue the structure of g + 2 depth and the far values of g + depth, compute g.
// Buffers: structure (2 depth + 1) groups, far values (depth + 1): the ones overwritten at g were
// last read at g - 1, before the barrier. A node sums its edges exactly as dag_warp_body does
// (lane e_lane takes edges e_lane, e_lane + LE, ... in order with fmaf from 0, then the same
// butterfly over LE lanes), so with the same LE per group the outputs are bit for bit dag_warp's.
// Tables: info[g] = (first row, first edge, first far entry, log_le) of group g (entry g + 1 bounds
// it); nodes[r] = (first edge relative to its group's, bias bits, global slot or -1 when no reader
// needs it there, activation | edge count << 8); edges[e] = (code, weight bits); far[f] = slot.

__device__ __forceinline__ unsigned smem_address(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

template <int BYTES>
__device__ __forceinline__ void cp_async(void* dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(smem_address(dst)), "l"(src), "n"(BYTES)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

__device__ __forceinline__ void cp_async_wait(int pending) {  // wait_group takes an immediate
    switch (pending) {
        case 0: asm volatile("cp.async.wait_group 0;\n" ::: "memory"); break;
        case 1: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
        case 2: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
        case 3: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
        case 4: asm volatile("cp.async.wait_group 4;\n" ::: "memory"); break;
        case 5: asm volatile("cp.async.wait_group 5;\n" ::: "memory"); break;
        case 6: asm volatile("cp.async.wait_group 6;\n" ::: "memory"); break;
        default: asm volatile("cp.async.wait_group 7;\n" ::: "memory"); break;
    }
}

#define WALK_HEADER 8  // words before a staged group's node records: first row, nodes, -, far entries, log_le

// copy group (a, b)'s structure into one staging slot (the header by plain stores)
__device__ __forceinline__ void walk_stage(int* slot, int4 a, int4 b, int node_cap, int edge_cap,
                                           const int4* __restrict__ nodes, const int2* __restrict__ edges,
                                           const int* __restrict__ far) {
    const int n_nodes = b.x - a.x, n_edges = b.y - a.y, n_far = b.z - a.z;
    if (threadIdx.x == 0) {
        slot[0] = a.x;
        slot[1] = n_nodes;
        slot[3] = n_far;
        slot[4] = a.w;
    }
    int4* sn = reinterpret_cast<int4*>(slot + WALK_HEADER);
    int2* se = reinterpret_cast<int2*>(slot + WALK_HEADER + 4 * node_cap);
    int* sf = slot + WALK_HEADER + 4 * node_cap + 2 * edge_cap;
    for (int i = threadIdx.x; i < n_nodes; i += blockDim.x) cp_async<16>(sn + i, nodes + a.x + i);
    for (int i = threadIdx.x; i < n_edges; i += blockDim.x) cp_async<8>(se + i, edges + a.y + i);
    for (int i = threadIdx.x; i < n_far; i += blockDim.x) cp_async<4>(sf + i, far + a.z + i);
}

template <int VEC>
__device__ __forceinline__ void walk_far_values(float* fv, const int* slot, int node_cap, int edge_cap,
                                                const float* values, int ld, size_t col0, int tile) {
    const int n_far = slot[3];
    const int* sf = slot + WALK_HEADER + 4 * node_cap + 2 * edge_cap;
    const int per = tile / VEC;  // copies of VEC floats per far entry
    for (int i = threadIdx.x; i < n_far * per; i += blockDim.x) {
        const int f = i / per, c = (i - f * per) * VEC;
        cp_async<4 * VEC>(fv + f * tile + c, values + (size_t)sf[f] * ld + col0 + c);
    }
}

template <int VEC>
__device__ __forceinline__ const float* walk_source(int code, const float* ring, const float* fv, int tile, int cl) {
    return (code >= 0 ? ring + code * tile : fv + (-code - 1) * tile) + cl;
}

template <int VEC>
__device__ void dag_walk_body(float* values, int ld, const int2* __restrict__ segs, const int4* __restrict__ info,
                              const int4* __restrict__ nodes, const int2* __restrict__ edges,
                              const int* __restrict__ far, int log_lb, int ring_rows, int depth, int node_cap,
                              int edge_cap, int far_cap) {
    extern __shared__ float4 walk_smem[];
    const int tile = (1 << log_lb) * VEC;
    const int n_sbuf = 2 * depth + 1, n_fbuf = depth + 1;
    const int sw = (WALK_HEADER + 4 * node_cap + 2 * edge_cap + far_cap + 3) & ~3;  // words per staged group
    // sections start on 16 bytes (cp.async of 16 bytes, float4 loads): sizes rounded up to 4 words
    float* ring = reinterpret_cast<float*>(walk_smem);
    float* fbuf = ring + ((ring_rows * tile + 3) & ~3);
    int* sbuf = reinterpret_cast<int*>(fbuf + ((n_fbuf * far_cap * tile + 3) & ~3));
    const size_t col0 = (size_t)blockIdx.x * tile;
    const int2 seg = segs[blockIdx.y];
    const int g0 = seg.x, g1 = seg.y;

    // prologue: the structure of groups g0 .. g0 + 2 depth - 1, then the far values of g0 .. g0 + depth - 1
    int4 ia = info[g0];
    for (int k = 0; k < 2 * depth && g0 + k < g1; ++k) {
        const int4 ib = info[g0 + k + 1];
        walk_stage(sbuf + ((g0 + k) % n_sbuf) * sw, ia, ib, node_cap, edge_cap, nodes, edges, far);
        ia = ib;
    }
    cp_async_commit();
    cp_async_wait(0);
    __syncthreads();
    // one commit group per group's far values, empty or not, so that group g's are always the
    // (g - g0)-th group committed here and wait_group depth - 1 at iteration g covers them
    for (int k = 0; k < depth; ++k) {
        if (g0 + k < g1)
            walk_far_values<VEC>(fbuf + ((g0 + k) % n_fbuf) * far_cap * tile, sbuf + ((g0 + k) % n_sbuf) * sw,
                                 node_cap, edge_cap, values, ld, col0, tile);
        cp_async_commit();
    }
    // ia, ib: the bounds of group g + 2 depth, loaded one iteration ahead of their use
    int4 ib = info[min(g0 + 2 * depth + 1, g1)];

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int g = g0; g < g1; ++g) {
        cp_async_wait(depth - 1);  // this thread's copies for group g are in
        __syncthreads();           // everyone's are, and group g - 1 is written
        if (g + 2 * depth < g1)
            walk_stage(sbuf + ((g + 2 * depth) % n_sbuf) * sw, ia, ib, node_cap, edge_cap, nodes, edges, far);
        if (g + depth < g1)
            walk_far_values<VEC>(fbuf + ((g + depth) % n_fbuf) * far_cap * tile, sbuf + ((g + depth) % n_sbuf) * sw,
                                 node_cap, edge_cap, values, ld, col0, tile);
        cp_async_commit();  // one group per iteration, empty or not: wait_group counts them
        ia = ib;
        ib = info[min(g + 2 * depth + 2, g1)];

        const int* slot = sbuf + (g % n_sbuf) * sw;
        const int row0 = slot[0], n_nodes = slot[1], log_le = slot[4];
        const int4* sn = reinterpret_cast<const int4*>(slot + WALK_HEADER);
        const int2* se = reinterpret_cast<const int2*>(slot + WALK_HEADER + 4 * node_cap);
        const float* fv = fbuf + (g % n_fbuf) * far_cap * tile;
        const int log_tpn = log_lb + log_le;
        const int tpn = 1 << log_tpn, le = 1 << log_le;
        const int lig = lane & (tpn - 1);
        const int b_lane = lig & ((1 << log_lb) - 1), e_lane = lig >> log_lb;
        const int per_warp = 32 >> log_tpn;
        const int cl = b_lane * VEC;
        for (int base = warp * per_warp; base < n_nodes; base += warps * per_warp) {
            const int p = base + (lane >> log_tpn);
            float acc[VEC];
#pragma unroll
            for (int k = 0; k < VEC; ++k) acc[k] = 0.0f;
            int4 rec = make_int4(0, 0, -1, 0);
            if (p < n_nodes) {
                rec = sn[p];
                const int2* ep = se + rec.x;
                lane_sum<VEC>(acc, e_lane, rec.w >> 8, le, [&](int e, float (&v)[VEC]) {
                    const int2 r = ep[e];
                    Lanes<VEC>::load(walk_source<VEC>(r.x, ring, fv, tile, cl), v);
                    return __int_as_float(r.y);
                });
            }
            lane_reduce<VEC>(acc, log_lb, tpn);
            if (p < n_nodes && e_lane == 0) {
                const float b = __int_as_float(rec.y);
                const int code = rec.w & 0xff;
#pragma unroll
                for (int k = 0; k < VEC; ++k) acc[k] = activate(acc[k] + b, code);
                Lanes<VEC>::store(ring + ((row0 + p) % ring_rows) * tile + cl, acc);
                if (rec.z >= 0) Lanes<VEC>::store(values + (size_t)rec.z * ld + col0 + cl, acc);
            }
        }
    }
    cp_async_wait(0);
}

#define DAG_WALK_ARGS float *values, int ld, const int2 *segs, const int4 *info, const int4 *nodes, \
    const int2 *edges, const int *far, int log_lb, int ring_rows, int depth, int node_cap, int edge_cap, int far_cap

extern "C" __global__ void __launch_bounds__(256) dag_walk1(DAG_WALK_ARGS) {
    dag_walk_body<1>(values, ld, segs, info, nodes, edges, far, log_lb, ring_rows, depth, node_cap, edge_cap, far_cap);
}

extern "C" __global__ void __launch_bounds__(256) dag_walk4(DAG_WALK_ARGS) {
    dag_walk_body<4>(values, ld, segs, info, nodes, edges, far, log_lb, ring_rows, depth, node_cap, edge_cap, far_cap);
}

// ----------------------------------------------------------------------------- dag_lane
// For deep, narrow networks: one thread per input vector walks a run of groups; a block holds 32
// input vectors (fewer for narrower batches) and LANE_WARPS warps (a build option, 1 .. 8; 4 by
// default) that share them: each takes some of each group's bundles for all 32 vectors, and a
// block barrier closes the group. So every structure word is read by a whole warp at once. The host (spdnn/dag/lane_stream.py) turned the
// structure into a stream a thread follows without deciding anything per edge: each source is a
// shared-memory word offset (its ring place, or its place in the chunk's far buffer), a group's
// nodes are summed in bundles of 1 to 4 (as many bundles as warps for small groups; a shorter node
// is padded with weight 0 read from the zero row), and each node's sum is fmaf in edge order from
// 0 (LE = 1: bit for bit dag_warp wherever its plan has LE = 1, from 128 input vectors on). Shared
// memory, in words: the ring (row r of vector t at (r % ring) * 32 + t), two far buffers (entry f at
// ((chunk % 2) * cap_far + f) * 32 + t), the zero row (32 words), three staging buffers of
// cap_words. Per run (segs[y] = (b0, b1)), chunk i = b0 .. b1 - 1 is words chunk_words[i] of
// `stream`: [0:4] groups, far entries, far offset, 0 | per group: bundles, first bundle, 0, 0 |
// per bundle: P, steps, record offset, node offset | records (per step: P addresses, P weight
// bits; P = 3 laid out as 4) | per node: ring address, global slot or -1, bias bits, activation |
// far slots. Chunk i: wait for this thread's copies (chunk i's far values, chunk i + 1's
// structure), barrier (everyone's are in and chunk i - 1 is done), issue chunk i + 1's far values
// (its sources were written before chunk i started: lane_chunks checks it) and chunk i + 2's
// structure, run chunk i group by group.
#define LANE_THREADS 32
#ifndef LANE_WARPS  // spdnn.dag.cuda builds the kernels with -DLANE_WARPS=n for lane_warps=n
#define LANE_WARPS 4
#endif
// Diagnostic builds only (benchmarks/profile_dag_walk.py --leave-out: their outputs are not valid):
// bits of LANE_LEAVE_OUT leave out 1 the barrier a group, 2 the global stores, 4 the sums' steps.
#ifndef LANE_LEAVE_OUT
#define LANE_LEAVE_OUT 0
#endif
#ifndef LANE_STEP_BLOCK  // -DLANE_STEP_BLOCK=U: the stream's steps padded to multiples of U (lane_step_block)
#define LANE_STEP_BLOCK 1
#endif
#define LANE_HEADER 4

__device__ __forceinline__ void lane_stage(int* buf, int2 cw, const int4* __restrict__ stream) {
    int4* dst = reinterpret_cast<int4*>(buf);
    const int4* src = stream + (cw.x >> 2);
    for (int i = threadIdx.x; i < (cw.y >> 2); i += blockDim.x) cp_async<16>(dst + i, src + i);
}

// this thread's column of a staged chunk's far values, into its far buffer
// (warp w of the block takes entries 4w .. 4w + 3, then 4 (w + warps) ...)
__device__ __forceinline__ void lane_far(float* fbuf, const int* buf, int w, const float* values, int ld,
                                         size_t col, bool active) {
    const int n = active ? buf[1] : 0;  // a lane past the block's columns copies nothing
    const int4* slots = reinterpret_cast<const int4*>(buf + buf[2]);
    for (int f = 4 * w; f < n; f += 4 * LANE_WARPS) {
        const int4 s = slots[f >> 2];  // four slots a load (the section is padded to 4 words)
        cp_async<4>(fbuf + f * LANE_THREADS, values + (size_t)s.x * ld + col);
        if (f + 1 < n) cp_async<4>(fbuf + (f + 1) * LANE_THREADS, values + (size_t)s.y * ld + col);
        if (f + 2 < n) cp_async<4>(fbuf + (f + 2) * LANE_THREADS, values + (size_t)s.z * ld + col);
        if (f + 3 < n) cp_async<4>(fbuf + (f + 3) * LANE_THREADS, values + (size_t)s.w * ld + col);
    }
}

template <int P> struct Step;
template <> struct Step<1> {
    static __device__ __forceinline__ void load(const int* r, int (&a)[1], float (&w)[1]) {
        const int2 v = *reinterpret_cast<const int2*>(r);
        a[0] = v.x; w[0] = __int_as_float(v.y);
    }
};
template <> struct Step<2> {
    static __device__ __forceinline__ void load(const int* r, int (&a)[2], float (&w)[2]) {
        const int4 v = *reinterpret_cast<const int4*>(r);
        a[0] = v.x; a[1] = v.y; w[0] = __int_as_float(v.z); w[1] = __int_as_float(v.w);
    }
};
template <> struct Step<3> {  // laid out as a step of 4 (the fourth lane unused)
    static __device__ __forceinline__ void load(const int* r, int (&a)[3], float (&w)[3]) {
        const int4 u = *reinterpret_cast<const int4*>(r), v = *reinterpret_cast<const int4*>(r + 4);
        a[0] = u.x; a[1] = u.y; a[2] = u.z;
        w[0] = __int_as_float(v.x); w[1] = __int_as_float(v.y); w[2] = __int_as_float(v.z);
    }
};
template <> struct Step<4> {
    static __device__ __forceinline__ void load(const int* r, int (&a)[4], float (&w)[4]) {
        const int4 u = *reinterpret_cast<const int4*>(r), v = *reinterpret_cast<const int4*>(r + 4);
        a[0] = u.x; a[1] = u.y; a[2] = u.z; a[3] = u.w;
        w[0] = __int_as_float(v.x); w[1] = __int_as_float(v.y); w[2] = __int_as_float(v.z); w[3] = __int_as_float(v.w);
    }
};

// activate() without its jump table: the cheap codes by selects, sigmoid and tanh by a branch
// (uniform across the warp); the same operations per code, so the same bits
__device__ __forceinline__ float activate_selects(float z, int code) {
    if (code == 3 || code == 4) return activate(z, code);
    const float r = fmaxf(z, 0.0f);
    const float clipped = fminf(r, code == 2 ? CLIP_AT : 1.0f);
    return code == 1 ? r : (code == 2 || code == 5 ? clipped : z);
}

// one bundle of P nodes: their sums step by step, then bias, activation, ring and global stores.
// `mine` is this thread's column of shared memory (smem + t), so a source costs one address add.
template <int P>
__device__ __forceinline__ void lane_bundle(const int* chunk, int4 h, float* mine, float* values, int ld,
                                            size_t col, bool active) {
    const int* rec = chunk + h.z;
    const int4* nd = reinterpret_cast<const int4*>(chunk + h.w);
    int4 n[P];  // the node records, loaded before the sums so their latency overlaps them
#pragma unroll
    for (int p = 0; p < P; ++p) n[p] = nd[p];
    float acc[P];
#pragma unroll
    for (int p = 0; p < P; ++p) acc[p] = 0.0f;
    constexpr int W = 2 * (P == 3 ? 4 : P);  // words a step
    const int steps = (LANE_LEAVE_OUT & 4) ? 0 : h.y;
#if LANE_STEP_BLOCK > 1
    // steps padded to a multiple of U by the host: no remainder loop, and the next block's records
    // (read past the bundle's last: unused) load while this block's values are summed
    constexpr int U = LANE_STEP_BLOCK;
    int a[U][P];
    float w[U][P];
#pragma unroll
    for (int j = 0; j < U; ++j) Step<P>::load(rec + j * W, a[j], w[j]);
    for (int s = 0; s < steps; s += U) {
        float v[U][P], wc[U][P];
#pragma unroll
        for (int j = 0; j < U; ++j)
#pragma unroll
            for (int p = 0; p < P; ++p) v[j][p] = mine[a[j][p]], wc[j][p] = w[j][p];
#pragma unroll
        for (int j = 0; j < U; ++j) Step<P>::load(rec + (s + U + j) * W, a[j], w[j]);
#pragma unroll
        for (int j = 0; j < U; ++j)
#pragma unroll
            for (int p = 0; p < P; ++p) acc[p] = fmaf(wc[j][p], v[j][p], acc[p]);
    }
#else
#pragma unroll 4
    for (int s = 0; s < steps; ++s) {
        int a[P];
        float w[P];
        Step<P>::load(rec + s * W, a, w);
#pragma unroll
        for (int p = 0; p < P; ++p) acc[p] = fmaf(w[p], mine[a[p]], acc[p]);
    }
#endif
#pragma unroll
    for (int p = 0; p < P; ++p) {
        const float z = activate_selects(acc[p] + __int_as_float(n[p].z), n[p].w);
        mine[n[p].x] = z;
        if (!(LANE_LEAVE_OUT & 2) && active && n[p].y >= 0) values[(size_t)n[p].y * ld + col] = z;
    }
}

extern "C" __global__ void __launch_bounds__(LANE_THREADS * LANE_WARPS) dag_lane(
    float* values, int ld, const int2* __restrict__ segs, const int2* __restrict__ chunk_words,
    const int4* __restrict__ stream, int ring_words, int cap_far, int cap_words, int cols) {
    extern __shared__ float4 lane_smem4[];
    float* smem = reinterpret_cast<float*>(lane_smem4);
    // `cols` (1 .. 32) columns a block, lane t of every warp on column t: for a batch narrower than a
    // warp each warp stays whole (its lanes past `cols` run along, masked), so the warps never share
    // one warp's issue slots as they did packed into cols x warps threads (batch 1: 18.3 -> 11.2 ms)
    const int t = threadIdx.x % LANE_THREADS, w = threadIdx.x / LANE_THREADS;
    const bool active = t < cols;
    float* mine = smem + t;
    const size_t col = (size_t)blockIdx.x * cols + (active ? t : 0);
    float* fbase = smem + ring_words;
    float* zero = fbase + 2 * cap_far * LANE_THREADS;
    int* sbase = reinterpret_cast<int*>(zero + LANE_THREADS);
    const int2 seg = segs[blockIdx.y];
    const int b0 = seg.x, b1 = seg.y;

    for (int i = threadIdx.x; i < LANE_THREADS; i += blockDim.x) zero[i] = 0.0f;
    lane_stage(sbase + (b0 % 3) * cap_words, chunk_words[b0], stream);
    if (b0 + 1 < b1) lane_stage(sbase + ((b0 + 1) % 3) * cap_words, chunk_words[b0 + 1], stream);
    cp_async_commit();
    cp_async_wait(0);
    __syncthreads();
    lane_far(fbase + (b0 % 2) * cap_far * LANE_THREADS + t, sbase + (b0 % 3) * cap_words, w, values, ld, col,
             active);
    cp_async_commit();
    int2 next = chunk_words[min(b0 + 2, b1)];  // chunk i + 2's words, loaded one chunk ahead

    for (int i = b0; i < b1; ++i) {
        cp_async_wait(0);
        __syncthreads();  // everyone's copies are in, and chunk i - 1 is done
        if (i + 1 < b1)
            lane_far(fbase + ((i + 1) % 2) * cap_far * LANE_THREADS + t, sbase + ((i + 1) % 3) * cap_words, w,
                     values, ld, col, active);
        if (i + 2 < b1) lane_stage(sbase + ((i + 2) % 3) * cap_words, next, stream);
        cp_async_commit();
        next = chunk_words[min(i + 3, b1)];

        const int* chunk = sbase + (i % 3) * cap_words;
        const int n_groups = chunk[0];
        const int4* groups = reinterpret_cast<const int4*>(chunk + LANE_HEADER);
        const int4* heads = groups + n_groups;
        int4 gh = groups[0];
        for (int g = 0; g < n_groups; ++g) {
            const int4 gh_next = groups[g + 1];  // one ahead (past the last: a bundle header, unused)
            for (int k = w; k < gh.x; k += LANE_WARPS) {  // warp w: bundles w, w + warps, ...
                const int4 h = heads[gh.y + k];
                if (h.x == 1) lane_bundle<1>(chunk, h, mine, values, ld, col, active);
                else if (h.x == 2) lane_bundle<2>(chunk, h, mine, values, ld, col, active);
                else if (h.x == 3) lane_bundle<3>(chunk, h, mine, values, ld, col, active);
                else lane_bundle<4>(chunk, h, mine, values, ld, col, active);
            }
            if (!(LANE_LEAVE_OUT & 1)) __syncthreads();  // the group's values are in the ring before the next reads them
            gh = gh_next;
        }
    }
    cp_async_wait(0);
}


extern "C" __global__ void dag_gather(const float* values, int ld, const int* __restrict__ rows, int nrows, float* out) {
    const size_t total = (size_t)nrows * ld;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t j = i / ld;
        out[i] = values[(size_t)rows[j] * ld + (i - j * ld)];
    }
}
