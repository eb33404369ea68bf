// CPU kernels of event-driven products: y[m, :] = sum_{k < count[m]} values[m, k] * W[ids[m, k], :]
// (sparse_snns' SparseLinear; dense_snns' layers on the events of a dense input).
//
// Seven ops (float32 and float64):
//   DenseSnnsSparseLinear             (ids, values, count, weights) -> output [M, N_out]
//   DenseSnnsSparseLinearGradWeights  (ids, values, count, grad, weights) -> grad_weights [N_in, N_out]
//   DenseSnnsSparseLinearGradValues   (ids, count, weights, grad) -> grad_values [M, K]
//   DenseSnnsSparseLinearPacked       (ids, values, count, packed; n_out) -> output [M, N_out]
//   DenseSnnsSparseLinearPackedGradValues (ids, count, packed, grad) -> grad_values [M, K]
//   DenseSnnsDenseToEvents            (x [M, N_in]) -> the nonzero entries of each row as
//                                     (ids, values, count) with K = the largest count (>= 1)
//   DenseSnnsNonzeroFraction          (x [M, N_in]) -> the fraction of nonzero entries of a
//                                     sample of rows (float scalar)
//
// ids int32 [M, K], values [M, K], count int32 [M], weights [N_in, N_out], grad [M, N_out].
// `packed` [blocks, N_in, width] is W already in the kernels' packed layout, packed[b, i, j] =
// W[i, b * width + j] (zero past N_out), width 1, 2 or 4 cache lines: a loop that runs the
// product with one W at every step packs it once instead of at every call.
// Entries k >= count[m] are padding and are never read (their ids may hold anything); the
// values gradient is 0 there. The weight gradient is a dense [N_in, N_out] tensor.
//
// Memory layout and blocking. The kernels walk the output columns in blocks of up to 256
// bytes (64 floats; narrower when N_in or M is large) and copy ("pack") the block of the
// matrix they gather from into a contiguous scratch buffer of about 1 MiB that stays in L2
// while all samples are processed. Without packing, the rows of a narrow column block are
// N_out elements apart and, for power-of-two N_out, fall into a few cache sets and evict
// each other. The accumulator of one output block (up to 64 floats) stays in vector
// registers while its events are summed. Columns left over after the whole lines (all of
// them in a narrow layer such as a 20-unit readout) are packed zero-padded to 1, 2 or 4
// lines and run through the same vector code; only the existing columns are stored.
//   forward       y[m, block] = sum_k values[m, k] * Wpack[ids[m, k]]: gather from packed W
//                 (packing is skipped when there are fewer events than N_in / 2: no reuse);
//                 trailing entries of value 0 in a row are skipped;
//   weight grad   the events of nonzero value are sorted by input neuron (counting sort), then
//                 dW[i, block] = sum over the events of neuron i of value * dYpack[m]: a
//                 gather from packed dY into registers, each dW element written once (no
//                 zero fill, no read-modify-write scatter);
//   values grad   dv[m, k] = sum over blocks of dot(dY[m, block], Wpack[ids[m, k]]).
// The *Packed ops read the blocks from `packed` instead of packing them (same micro-kernels).
// Work is split among TensorFlow's intra-op threads: forward by column ranges (and row
// ranges when there are few columns), weight gradient by column ranges only (every thread
// owns disjoint columns of dW starting on a 64-byte line: no races, no atomics, no false
// sharing), values gradient by row ranges (every thread owns its rows of dv).
//
// Instruction sets: the kernels are plain loops on GCC/Clang vector types, compiled once per
// instruction set (SSE2, AVX2+FMA, AVX-512) in one portable library; the best one the CPU
// supports is chosen at load time (DENSE_SNNS_ISA=generic|avx2|avx512 can lower it). No
// -march=native is needed, so a cached library stays valid on another x86-64 machine.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/work_sharder.h"
#include "spikes_common.h"

namespace dense_snns_ops {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

typedef int64_t i64;
typedef int32_t i32;

// ------------------------------------------------------------------------------------------
// shape functions
// ------------------------------------------------------------------------------------------

// ids [M, K] and values [M, K] (or ids alone), count [M]: returns M and K.
static dsnn::Status SpikeDims(InferenceContext* c, int ids_index, int values_index, int count_index,
                              DimensionHandle* m, DimensionHandle* k) {
  ShapeHandle ids, count;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(ids_index), 2, &ids));
  if (values_index >= 0) {
    ShapeHandle values;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(values_index), 2, &values));
    TF_RETURN_IF_ERROR(c->Merge(ids, values, &ids));
  }
  TF_RETURN_IF_ERROR(c->WithRank(c->input(count_index), 1, &count));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(ids, 0), c->Dim(count, 0), m));
  *k = c->Dim(ids, 1);
  return dsnn::OkStatus();
}

static dsnn::Status ForwardShape(InferenceContext* c) {
  DimensionHandle m, k;
  TF_RETURN_IF_ERROR(SpikeDims(c, 0, 1, 2, &m, &k));
  ShapeHandle weights;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &weights));
  c->set_output(0, c->Matrix(m, c->Dim(weights, 1)));
  return dsnn::OkStatus();
}

static dsnn::Status GradWeightsShape(InferenceContext* c) {
  DimensionHandle m, k;
  TF_RETURN_IF_ERROR(SpikeDims(c, 0, 1, 2, &m, &k));
  ShapeHandle grad, weights;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &grad));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 2, &weights));
  DimensionHandle unused, n_out;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(grad, 0), m, &unused));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(grad, 1), c->Dim(weights, 1), &n_out));
  c->set_output(0, c->Matrix(c->Dim(weights, 0), n_out));
  return dsnn::OkStatus();
}

static dsnn::Status GradValuesShape(InferenceContext* c) {
  DimensionHandle m, k;
  TF_RETURN_IF_ERROR(SpikeDims(c, 0, -1, 1, &m, &k));
  ShapeHandle weights, grad;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &weights));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &grad));
  DimensionHandle unused;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(grad, 0), m, &unused));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(grad, 1), c->Dim(weights, 1), &unused));
  c->set_output(0, c->Matrix(m, k));
  return dsnn::OkStatus();
}

REGISTER_OP("DenseSnnsSparseLinear")
    .Input("ids: int32")
    .Input("values: T")
    .Input("count: int32")
    .Input("weights: T")
    .Output("output: T")
    .Attr("T: {float, double}")
    .SetShapeFn(ForwardShape)
    .Doc(R"doc(
Sparse-input linear map: output[m, :] = sum_{k < count[m]} values[m, k] * weights[ids[m, k], :].
)doc");

REGISTER_OP("DenseSnnsSparseLinearGradWeights")
    .Input("ids: int32")
    .Input("values: T")
    .Input("count: int32")
    .Input("grad: T")
    .Input("weights: T")
    .Output("grad_weights: T")
    .Attr("T: {float, double}")
    .SetShapeFn(GradWeightsShape)
    .Doc(R"doc(
Dense weight gradient: grad_weights[ids[m, k], :] += values[m, k] * grad[m, :] for k < count[m].
Only the shape of `weights` is used.
)doc");

REGISTER_OP("DenseSnnsSparseLinearGradValues")
    .Input("ids: int32")
    .Input("count: int32")
    .Input("weights: T")
    .Input("grad: T")
    .Output("grad_values: T")
    .Attr("T: {float, double}")
    .SetShapeFn(GradValuesShape)
    .Doc(R"doc(
Values gradient: grad_values[m, k] = dot(grad[m, :], weights[ids[m, k], :]) for k < count[m], else 0.
)doc");

static dsnn::Status PackedForwardShape(InferenceContext* c) {
  DimensionHandle m, k;
  TF_RETURN_IF_ERROR(SpikeDims(c, 0, 1, 2, &m, &k));
  ShapeHandle packed;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 3, &packed));
  int n_out = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("n_out", &n_out));
  c->set_output(0, c->Matrix(m, n_out));
  return dsnn::OkStatus();
}

static dsnn::Status PackedGradValuesShape(InferenceContext* c) {
  DimensionHandle m, k;
  TF_RETURN_IF_ERROR(SpikeDims(c, 0, -1, 1, &m, &k));
  ShapeHandle packed, grad;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 3, &packed));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &grad));
  DimensionHandle unused;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(grad, 0), m, &unused));
  c->set_output(0, c->Matrix(m, k));
  return dsnn::OkStatus();
}

REGISTER_OP("DenseSnnsSparseLinearPacked")
    .Input("ids: int32")
    .Input("values: T")
    .Input("count: int32")
    .Input("packed: T")
    .Output("output: T")
    .Attr("n_out: int >= 0")
    .Attr("T: {float, double}")
    .SetShapeFn(PackedForwardShape)
    .Doc(R"doc(
DenseSnnsSparseLinear with the weights packed: packed [blocks, N_in, width], packed[b, i, j] =
weights[i, b * width + j]; output [M, n_out].
)doc");

REGISTER_OP("DenseSnnsSparseLinearPackedGradValues")
    .Input("ids: int32")
    .Input("count: int32")
    .Input("packed: T")
    .Input("grad: T")
    .Output("grad_values: T")
    .Attr("T: {float, double}")
    .SetShapeFn(PackedGradValuesShape)
    .Doc(R"doc(
DenseSnnsSparseLinearGradValues with the weights packed (see DenseSnnsSparseLinearPacked);
grad [M, N_out].
)doc");

// ------------------------------------------------------------------------------------------
// argument checks
// ------------------------------------------------------------------------------------------

// Shapes of ids [M, K], values [M, K] (optional), count [M], weights [N_in, N_out] and
// grad [M, N_out] (optional).
// ids [M, K] (M < 2^31), count [M] and values [M, K] if given.
static dsnn::Status CheckSpikeArguments(const Tensor& ids, const Tensor* values, const Tensor& count) {
  TF_RETURN_IF_ERROR(spikes_common::CheckSpikeShapes(ids, count));
  const i64 m = ids.dim_size(0);
  if (m > static_cast<i64>(INT32_MAX)) {
    return tensorflow::errors::InvalidArgument("`ids` has ", m, " rows; at most 2^31 - 1 are supported");
  }
  if (values != nullptr && values->shape() != ids.shape()) {
    return tensorflow::errors::InvalidArgument("`values` must have the shape of `ids` ",
                                               ids.shape().DebugString(), ", got ",
                                               values->shape().DebugString());
  }
  return dsnn::OkStatus();
}

static dsnn::Status CheckShapes(const Tensor& ids, const Tensor* values, const Tensor& count,
                                const Tensor& weights, const Tensor* grad) {
  TF_RETURN_IF_ERROR(CheckSpikeArguments(ids, values, count));
  const i64 m = ids.dim_size(0);
  if (weights.dims() != 2) {
    return tensorflow::errors::InvalidArgument("`weights` (the kernel) must have rank 2 [N_in, N_out], got shape ",
                                               weights.shape().DebugString());
  }
  if (grad != nullptr && (grad->dims() != 2 || grad->dim_size(0) != m ||
                          grad->dim_size(1) != weights.dim_size(1))) {
    return tensorflow::errors::InvalidArgument("`grad` must have shape [M, N_out] = [", m, ", ",
                                               weights.dim_size(1), "], got ",
                                               grad->shape().DebugString());
  }
  return dsnn::OkStatus();
}

// count[m] in [0, K] and ids[m, k] in [0, N_in) for k < count[m]; returns sum(count).
static dsnn::Status CheckValues(const Tensor& ids, const Tensor& count, i64 n_in, i64* total) {
  return spikes_common::CheckValues(ids, count, n_in, "N_in", "the first dimension of the kernel", total);
}

// packed [blocks, N_in, width]: width 1, 2 or 4 cache lines, blocks = ceil(n_out / width);
// ids [M, K], count [M], values [M, K] and grad [M, n_out] if given.
template <typename T>
static dsnn::Status CheckPackedShapes(const Tensor& ids, const Tensor* values, const Tensor& count,
                                      const Tensor& packed, i64 n_out, const Tensor* grad) {
  TF_RETURN_IF_ERROR(CheckSpikeArguments(ids, values, count));
  const i64 m = ids.dim_size(0);
  const i64 lanes = 64 / static_cast<i64>(sizeof(T));
  if (packed.dims() != 3 || !(packed.dim_size(2) == lanes || packed.dim_size(2) == 2 * lanes ||
                              packed.dim_size(2) == 4 * lanes)) {
    return tensorflow::errors::InvalidArgument("`packed` must have shape [blocks, N_in, width] with width ", lanes,
                                               ", ", 2 * lanes, " or ", 4 * lanes, " (1, 2 or 4 cache lines), got ",
                                               packed.shape().DebugString());
  }
  const i64 width = packed.dim_size(2);
  if (packed.dim_size(0) != (n_out + width - 1) / width) {
    return tensorflow::errors::InvalidArgument("`packed` must have ceil(N_out / width) = ", (n_out + width - 1) / width,
                                               " blocks for N_out = ", n_out, ", got shape ",
                                               packed.shape().DebugString());
  }
  if (grad != nullptr && (grad->dims() != 2 || grad->dim_size(0) != m)) {
    return tensorflow::errors::InvalidArgument("`grad` must have shape [M, N_out] with M = ", m, ", got ",
                                               grad->shape().DebugString());
  }
  return dsnn::OkStatus();
}

// ------------------------------------------------------------------------------------------
// work splitting
// ------------------------------------------------------------------------------------------

using dense_snns_simd::Isa;
using dense_snns_simd::LoadV;
using dense_snns_simd::NumThreads;
using dense_snns_simd::RunParts;
using dense_snns_simd::StoreV;
using dense_snns_simd::VecOf;

// The column range [begin, end) of part p out of `parts`, split on 64-byte cache lines.
template <typename T>
static void ColumnRange(i64 n_out, i64 p, i64 parts, i64* begin, i64* end) {
  const i64 line = 64 / static_cast<i64>(sizeof(T));
  const i64 lines = (n_out + line - 1) / line;
  *begin = std::min(n_out, (lines * p / parts) * line);
  *end = std::min(n_out, (lines * (p + 1) / parts) * line);
}

// Below this many multiply-adds a kernel runs on the calling thread.
static const i64 kMinParallelWork = 1 << 16;

// ------------------------------------------------------------------------------------------
// inner kernels: one block of output columns, NV cache lines wide (compile-time), or, when
// W is not packed (forward and values gradient with few events), a remainder narrower than
// one line (the *Tail variants)
// ------------------------------------------------------------------------------------------

struct Spikes {
  const i32* ids;
  const i32* count;
  i64 k_cap;
};

template <typename T>
struct Line {
  static constexpr int kLanes = 64 / static_cast<int>(sizeof(T));
};

// Sum of the lanes of a vector in a fixed order (halves added pairwise). All kernels sum in
// an order fixed by the shapes and the instruction set, never by the thread count: results
// are reproducible run to run and for any number of threads.
template <typename T, int Bytes>
struct HorizontalSum {
  static DSNN_ALWAYS_INLINE T Of(const typename VecOf<T, Bytes>::type& v) {
    typedef typename VecOf<T, Bytes / 2>::type H;
    H lo, hi;
    std::memcpy(&lo, &v, sizeof(H));
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(H), sizeof(H));
    return HorizontalSum<T, Bytes / 2>::Of(lo + hi);
  }
};

template <typename T>
struct HorizontalSum<T, 2 * sizeof(T)> {
  static DSNN_ALWAYS_INLINE T Of(const typename VecOf<T, 2 * sizeof(T)>::type& v) { return v[0] + v[1]; }
};

// The forward and values-gradient micro-kernels read a block of W columns as rows
// `src + r * stride` (r in [0, N_in)): either W itself (stride N_out) or its packed copy
// (stride = block width).

// The entries of a row up to its last nonzero value: trailing entries of value 0 (the
// gradient-only entries a selection puts after the spikes) add nothing to the forward sum.
template <typename T>
DSNN_INLINE i64 Used(const T* v, i64 count) {
  while (count > 0 && v[count - 1] == T(0)) --count;
  return count;
}

// out[m, 0:NV*lanes] = sum_k values[m, k] * src[ids[m, k], 0:NV*lanes] for rows [r0, r1);
// the accumulators (two sets, for even and odd k) stay in vector registers.
template <typename T, int VB, int NV>
DSNN_INLINE void ForwardBlock(const Spikes& s, const T* values, const T* src, i64 stride, i64 r0, i64 r1,
                              T* out, i64 out_stride, int valid) {
  typedef typename VecOf<T, VB>::type V;
  constexpr int L = VB / static_cast<int>(sizeof(T));  // lanes per vector
  constexpr int NVEC = NV * 64 / VB;                   // vectors per block of NV lines
  for (i64 m = r0; m < r1; ++m) {
    V acc0[NVEC], acc1[NVEC];
    for (int i = 0; i < NVEC; ++i) acc0[i] = acc1[i] = V{};
    const i32* id = s.ids + m * s.k_cap;
    const T* v = values + m * s.k_cap;
    const i64 c = Used(v, s.count[m]);
    i64 k = 0;
    for (; k + 1 < c; k += 2) {
      const T* row0 = src + static_cast<i64>(id[k]) * stride;
      const T* row1 = src + static_cast<i64>(id[k + 1]) * stride;
      const T a0 = v[k], a1 = v[k + 1];
      for (int i = 0; i < NVEC; ++i) {
        acc0[i] += a0 * LoadV<V>(row0 + i * L);
        acc1[i] += a1 * LoadV<V>(row1 + i * L);
      }
    }
    if (k < c) {
      const T* row0 = src + static_cast<i64>(id[k]) * stride;
      const T a0 = v[k];
      for (int i = 0; i < NVEC; ++i) acc0[i] += a0 * LoadV<V>(row0 + i * L);
    }
    T* o = out + m * out_stride;
    if (valid == NVEC * L) {
      for (int i = 0; i < NVEC; ++i) StoreV(o + i * L, acc0[i] + acc1[i]);
    } else {  // a zero-padded block: only the first `valid` columns exist
      T sum[NVEC * L];
      for (int i = 0; i < NVEC; ++i) StoreV(sum + i * L, acc0[i] + acc1[i]);
      std::memcpy(o, sum, sizeof(T) * valid);
    }
  }
}

template <typename T>
DSNN_INLINE void ForwardTail(const Spikes& s, const T* values, const T* src, i64 stride, int width, i64 r0,
                             i64 r1, T* out, i64 out_stride) {
  for (i64 m = r0; m < r1; ++m) {
    T acc[Line<T>::kLanes];
    for (int j = 0; j < width; ++j) acc[j] = T(0);
    const i32* id = s.ids + m * s.k_cap;
    const T* v = values + m * s.k_cap;
    const i64 c = Used(v, s.count[m]);
    for (i64 k = 0; k < c; ++k) {
      const T* row = src + static_cast<i64>(id[k]) * stride;
      const T a = v[k];
      for (int j = 0; j < width; ++j) acc[j] += a * row[j];
    }
    T* o = out + m * out_stride;
    for (int j = 0; j < width; ++j) o[j] = acc[j];
  }
}

// The weight gradient works on the spikes sorted by input neuron (CSR: for input i, the
// entries start[i] .. start[i+1]-1 hold the sample m and value of every event of neuron i, in
// increasing m). Then dw[i, block] = sum over those entries of value * grad[m, block] is
// accumulated in registers and stored once: a gather like the forward pass (loads only,
// from the packed block of grad), instead of a read-modify-write scatter into dw.
template <typename T>
struct Event {
  i32 row;  // sample index m
  T value;
};

template <typename T>
struct Csr {
  const i64* start;         // [N_in + 1]
  const Event<T>* events;   // [events], one array: one write stream per input neuron
};

// dw[i, 0:NV*lanes] (=, or += if !first) sum_{entries p of i with m in [m0, m1)} values[p] *
// pack[m - m0, :] for i in [0, n_in); cursor[i] is the first entry of i not yet consumed.
template <typename T, int VB, int NV>
DSNN_INLINE void GradWeightsBlock(const Csr<T>& csr, i64 n_in, const T* pack, i64 m0, i64 m1, i64* cursor,
                                  bool first, T* dw, i64 dw_stride, int valid) {
  typedef typename VecOf<T, VB>::type V;
  constexpr int L = VB / static_cast<int>(sizeof(T));  // lanes per vector
  constexpr int NVEC = NV * 64 / VB;                   // vectors per block of NV lines
  constexpr i64 W = NV * Line<T>::kLanes;
  const i32 end_row = static_cast<i32>(m1);
  for (i64 i = 0; i < n_in; ++i) {
    V acc0[NVEC], acc1[NVEC];
    for (int j = 0; j < NVEC; ++j) acc0[j] = acc1[j] = V{};
    i64 p = cursor[i];
    const i64 end = csr.start[i + 1];
    for (; p + 1 < end && csr.events[p + 1].row < end_row; p += 2) {
      const T* row0 = pack + (csr.events[p].row - m0) * W;
      const T* row1 = pack + (csr.events[p + 1].row - m0) * W;
      const T a0 = csr.events[p].value, a1 = csr.events[p + 1].value;
      for (int j = 0; j < NVEC; ++j) {
        acc0[j] += a0 * LoadV<V>(row0 + j * L);
        acc1[j] += a1 * LoadV<V>(row1 + j * L);
      }
    }
    if (p < end && csr.events[p].row < end_row) {
      const T* row0 = pack + (csr.events[p].row - m0) * W;
      const T a0 = csr.events[p].value;
      for (int j = 0; j < NVEC; ++j) acc0[j] += a0 * LoadV<V>(row0 + j * L);
      ++p;
    }
    cursor[i] = p;
    T* out = dw + i * dw_stride;
    if (valid == NVEC * L) {
      for (int j = 0; j < NVEC; ++j) {
        const V sum = acc0[j] + acc1[j];
        StoreV(out + j * L, first ? sum : LoadV<V>(out + j * L) + sum);
      }
    } else {  // a zero-padded block: only the first `valid` columns exist
      T sum[NVEC * L];
      for (int j = 0; j < NVEC; ++j) StoreV(sum + j * L, acc0[j] + acc1[j]);
      for (int e = 0; e < valid; ++e) out[e] = first ? sum[e] : out[e] + sum[e];
    }
  }
}

// dv[m, k] += dot(grad[m, 0:NV*lanes], src[ids[m, k], 0:NV*lanes]) for rows [r0, r1), k < count[m];
// the products are summed lane-wise in one vector, then across lanes in a fixed order.
template <typename T, int VB, int NV>
DSNN_INLINE void GradValuesBlock(const Spikes& s, const T* src, i64 stride, const T* grad, i64 grad_stride,
                                 i64 r0, i64 r1, T* dv, int valid) {
  typedef typename VecOf<T, VB>::type V;
  constexpr int L = VB / static_cast<int>(sizeof(T));  // lanes per vector
  constexpr int NVEC = NV * 64 / VB;                   // vectors per block of NV lines
  for (i64 m = r0; m < r1; ++m) {
    const i64 c = s.count[m];
    if (c == 0) continue;
    V g[NVEC];
    const T* gm = grad + m * grad_stride;
    if (valid == NVEC * L) {
      for (int i = 0; i < NVEC; ++i) g[i] = LoadV<V>(gm + i * L);
    } else {  // a zero-padded block of W: pad grad with zeros too (never read past the row)
      T padded[NVEC * L] = {};
      std::memcpy(padded, gm, sizeof(T) * valid);
      for (int i = 0; i < NVEC; ++i) g[i] = LoadV<V>(padded + i * L);
    }
    const i32* id = s.ids + m * s.k_cap;
    T* d = dv + m * s.k_cap;
    for (i64 k = 0; k < c; ++k) {
      const T* row = src + static_cast<i64>(id[k]) * stride;
      V lanes = g[0] * LoadV<V>(row);
      for (int i = 1; i < NVEC; ++i) lanes += g[i] * LoadV<V>(row + i * L);
      d[k] += HorizontalSum<T, VB>::Of(lanes);
    }
  }
}

template <typename T>
DSNN_INLINE void GradValuesTail(const Spikes& s, const T* src, i64 stride, const T* grad, i64 grad_stride,
                                int width, i64 r0, i64 r1, T* dv) {
  for (i64 m = r0; m < r1; ++m) {
    const i64 c = s.count[m];
    if (c == 0) continue;
    const T* gm = grad + m * grad_stride;
    const i32* id = s.ids + m * s.k_cap;
    T* d = dv + m * s.k_cap;
    for (i64 k = 0; k < c; ++k) {
      const T* row = src + static_cast<i64>(id[k]) * stride;
      T sum = T(0);
      for (int j = 0; j < width; ++j) sum += gm[j] * row[j];
      d[k] += sum;
    }
  }
}

// pack[r, 0:width] = w[r, c0:c0+width], pack[r, width:stride] = 0 (pack rows `stride` apart).
template <typename T>
DSNN_INLINE void PackColumns(const T* w, i64 n_in, i64 n_out, i64 c0, int width, int stride, T* pack) {
  for (i64 r = 0; r < n_in; ++r) {
    std::memcpy(pack + r * stride, w + r * n_out + c0, sizeof(T) * width);
    if (stride > width) std::memset(pack + r * stride + width, 0, sizeof(T) * (stride - width));
  }
}

// Column blocks: as many cache lines as fit the packing budget (at most kMaxBlockLines), so
// that the packed block of N_in rows stays in L2; see BlockLines.
static const int kMaxBlockLines = 4;
static const i64 kPackBudgetBytes = 1 << 20;
// Blocks are 1, 2 or 4 lines wide (the kernels' cases), and a padded remainder must fit the
// scratch sized for block_lines: both hold for a power of two <= 4.
static_assert(kMaxBlockLines == 1 || kMaxBlockLines == 2 || kMaxBlockLines == 4,
              "kMaxBlockLines must be 1, 2 or 4");

static int BlockLines(i64 n_in) {
  int lines = kMaxBlockLines;
  while (lines > 1 && n_in * 64 * lines > kPackBudgetBytes) lines /= 2;
  return lines;
}

// The next block of [c0, ce): `block_lines` lines if they fit, else one line, else the
// remainder (< one line, nv = 0). With `pad` (the caller packs the block into a zero-padded
// copy), a remainder that is not a whole number of lines is instead processed as a block of
// 1, 2 or 4 lines (nv) of which only the first `width` columns exist: vector code for narrow
// layers (for example 20 readout units) instead of the scalar tail. Returns the width in
// elements (the columns that exist).
template <typename T>
DSNN_INLINE int NextBlock(i64 c0, i64 ce, int block_lines, bool pad, int* nv) {
  constexpr int L = Line<T>::kLanes;
  const i64 left = ce - c0;
  if (left >= static_cast<i64>(block_lines) * L) {
    *nv = block_lines;
  } else if (pad && left % L != 0) {  // then nv <= block_lines: the scratch holds the block
    *nv = 1;
    while (*nv * L < left) *nv *= 2;
    return static_cast<int>(left);
  } else if (left >= L) {
    *nv = 1;
  } else {
    *nv = 0;
    return static_cast<int>(left);
  }
  return *nv * L;
}

// Forward for columns [cb, ce) and rows [r0, r1); packs each block into `scratch` if `pack`.
template <typename T, int VB>
DSNN_INLINE void ForwardColumns(const Spikes& s, const T* values, const T* w, i64 n_in, i64 n_out, i64 cb,
                                i64 ce, i64 r0, i64 r1, int block_lines, bool pack, T* scratch, T* out) {
  for (i64 c0 = cb; c0 < ce;) {
    int nv = 0;
    const int width = NextBlock<T>(c0, ce, block_lines, pack, &nv);
    const T* src = w + c0;
    i64 stride = n_out;
    if (pack) {
      stride = nv > 0 ? nv * Line<T>::kLanes : width;
      PackColumns(w, n_in, n_out, c0, width, static_cast<int>(stride), scratch);
      src = scratch;
    }
    switch (nv) {
      case 4: ForwardBlock<T, VB, 4>(s, values, src, stride, r0, r1, out + c0, n_out, width); break;
      case 2: ForwardBlock<T, VB, 2>(s, values, src, stride, r0, r1, out + c0, n_out, width); break;
      case 1: ForwardBlock<T, VB, 1>(s, values, src, stride, r0, r1, out + c0, n_out, width); break;
      default: ForwardTail<T>(s, values, src, stride, width, r0, r1, out + c0, n_out); break;
    }
    c0 += width;
  }
}

// Weight gradient for columns [cb, ce) (owned by the caller): for every block and every tile of
// `tile_rows` samples, grad[tile, block] is packed into `scratch` (contiguous, it stays in L2)
// and dw[:, block] is accumulated from it; `cursor` ([N_in]) tracks the CSR position per input.
template <typename T, int VB>
DSNN_INLINE void GradWeightsColumns(const Csr<T>& csr, i64 m_rows, const T* grad, i64 n_in, i64 n_out, i64 cb,
                                    i64 ce, int block_lines, i64 tile_rows, T* scratch, i64* cursor, T* dw) {
  for (i64 c0 = cb; c0 < ce;) {
    int nv = 0;
    const int width = NextBlock<T>(c0, ce, block_lines, true, &nv);  // padded: nv >= 1
    const int stride = nv * Line<T>::kLanes;
    std::memcpy(cursor, csr.start, sizeof(i64) * n_in);
    for (i64 m0 = 0; m0 < std::max<i64>(m_rows, 1); m0 += tile_rows) {
      const i64 m1 = std::min(m_rows, m0 + tile_rows);
      const bool first = m0 == 0;
      PackColumns(grad + m0 * n_out, m1 - m0, n_out, c0, width, stride, scratch);
      switch (nv) {
        case 4: GradWeightsBlock<T, VB, 4>(csr, n_in, scratch, m0, m1, cursor, first, dw + c0, n_out, width); break;
        case 2: GradWeightsBlock<T, VB, 2>(csr, n_in, scratch, m0, m1, cursor, first, dw + c0, n_out, width); break;
        default: GradWeightsBlock<T, VB, 1>(csr, n_in, scratch, m0, m1, cursor, first, dw + c0, n_out, width); break;
      }
    }
    c0 += width;
  }
}

// Values gradient for rows [r0, r1) over all columns; packs each block into `scratch` if `pack`.
template <typename T, int VB>
DSNN_INLINE void GradValuesColumns(const Spikes& s, const T* w, const T* grad, i64 n_in, i64 n_out, i64 r0,
                                   i64 r1, int block_lines, bool pack, T* scratch, T* dv) {
  for (i64 c0 = 0; c0 < n_out;) {
    int nv = 0;
    const int width = NextBlock<T>(c0, n_out, block_lines, pack, &nv);
    const T* src = w + c0;
    i64 stride = n_out;
    if (pack) {
      stride = nv > 0 ? nv * Line<T>::kLanes : width;
      PackColumns(w, n_in, n_out, c0, width, static_cast<int>(stride), scratch);
      src = scratch;
    }
    switch (nv) {
      case 4: GradValuesBlock<T, VB, 4>(s, src, stride, grad + c0, n_out, r0, r1, dv, width); break;
      case 2: GradValuesBlock<T, VB, 2>(s, src, stride, grad + c0, n_out, r0, r1, dv, width); break;
      case 1: GradValuesBlock<T, VB, 1>(s, src, stride, grad + c0, n_out, r0, r1, dv, width); break;
      default: GradValuesTail<T>(s, src, stride, grad + c0, n_out, width, r0, r1, dv); break;
    }
    c0 += width;
  }
}

// Forward over the packed blocks [b0, b1) (nv lines wide each) for rows [r0, r1).
template <typename T, int VB>
DSNN_INLINE void ForwardPackedBlocks(const Spikes& s, const T* values, const T* packed, i64 n_in, i64 n_out,
                                     int nv, i64 b0, i64 b1, i64 r0, i64 r1, T* out) {
  const i64 width = nv * Line<T>::kLanes;
  for (i64 b = b0; b < b1; ++b) {
    const T* src = packed + b * n_in * width;
    const int valid = static_cast<int>(std::min(width, n_out - b * width));
    switch (nv) {
      case 4: ForwardBlock<T, VB, 4>(s, values, src, width, r0, r1, out + b * width, n_out, valid); break;
      case 2: ForwardBlock<T, VB, 2>(s, values, src, width, r0, r1, out + b * width, n_out, valid); break;
      default: ForwardBlock<T, VB, 1>(s, values, src, width, r0, r1, out + b * width, n_out, valid); break;
    }
  }
}

// Values gradient over all packed blocks for rows [r0, r1).
template <typename T, int VB>
DSNN_INLINE void GradValuesPackedBlocks(const Spikes& s, const T* packed, const T* grad, i64 n_in, i64 n_out,
                                        int nv, i64 r0, i64 r1, T* dv) {
  const i64 width = nv * Line<T>::kLanes;
  for (i64 b = 0; b * width < n_out; ++b) {
    const T* src = packed + b * n_in * width;
    const int valid = static_cast<int>(std::min(width, n_out - b * width));
    switch (nv) {
      case 4: GradValuesBlock<T, VB, 4>(s, src, width, grad + b * width, n_out, r0, r1, dv, valid); break;
      case 2: GradValuesBlock<T, VB, 2>(s, src, width, grad + b * width, n_out, r0, r1, dv, valid); break;
      default: GradValuesBlock<T, VB, 1>(s, src, width, grad + b * width, n_out, r0, r1, dv, valid); break;
    }
  }
}

// Packing pays off when the rows of W are used more than about once: at least N_in / 2 events.
static bool WorthPacking(i64 events, i64 n_in) { return 2 * events >= n_in; }

// ------------------------------------------------------------------------------------------
// dispatch: one entry point per instruction set
// ------------------------------------------------------------------------------------------

// VB: bytes of the vector type the kernels use, the register width of the instruction set
// (a wider vector type than the registers makes GCC spill it to memory).
#define DSNN_ENTRIES(SUFFIX, ATTRIBUTES, VB)                                                      \
  template <typename T>                                                                           \
  ATTRIBUTES void Forward##SUFFIX(const Spikes& s, const T* values, const T* w, i64 n_in,          \
                                  i64 n_out, i64 cb, i64 ce, i64 r0, i64 r1, int block_lines,     \
                                  bool pack, T* scratch, T* out) {                                \
    ForwardColumns<T, VB>(s, values, w, n_in, n_out, cb, ce, r0, r1, block_lines, pack, scratch,  \
                          out);                                                                   \
  }                                                                                               \
  template <typename T>                                                                           \
  ATTRIBUTES void GradWeights##SUFFIX(const Csr<T>& csr, i64 m_rows, const T* grad, i64 n_in,      \
                                      i64 n_out, i64 cb, i64 ce, int block_lines, i64 tile_rows,  \
                                      T* scratch, i64* cursor, T* dw) {                           \
    GradWeightsColumns<T, VB>(csr, m_rows, grad, n_in, n_out, cb, ce, block_lines, tile_rows,     \
                              scratch, cursor, dw);                                               \
  }                                                                                               \
  template <typename T>                                                                           \
  ATTRIBUTES void GradValues##SUFFIX(const Spikes& s, const T* w, const T* grad, i64 n_in,         \
                                     i64 n_out, i64 r0, i64 r1, int block_lines, bool pack,       \
                                     T* scratch, T* dv) {                                         \
    GradValuesColumns<T, VB>(s, w, grad, n_in, n_out, r0, r1, block_lines, pack, scratch, dv);    \
  }                                                                                               \
  template <typename T>                                                                           \
  ATTRIBUTES void ForwardPacked##SUFFIX(const Spikes& s, const T* values, const T* packed,         \
                                        i64 n_in, i64 n_out, int nv, i64 b0, i64 b1, i64 r0,      \
                                        i64 r1, T* out) {                                         \
    ForwardPackedBlocks<T, VB>(s, values, packed, n_in, n_out, nv, b0, b1, r0, r1, out);          \
  }                                                                                               \
  template <typename T>                                                                           \
  ATTRIBUTES void GradValuesPacked##SUFFIX(const Spikes& s, const T* packed, const T* grad,        \
                                           i64 n_in, i64 n_out, int nv, i64 r0, i64 r1, T* dv) {  \
    GradValuesPackedBlocks<T, VB>(s, packed, grad, n_in, n_out, nv, r0, r1, dv);                  \
  }

DSNN_ENTRIES(Generic, static, 16)

#ifdef DSNN_X86_DISPATCH
DSNN_ENTRIES(Avx2, static __attribute__((target("avx2,fma"))), 32)
DSNN_ENTRIES(Avx512, static __attribute__((target("avx512f,avx512vl,avx2,fma"))), 64)
#endif

// The best instruction set of this CPU (see dense_snns_simd::DetectIsa).
static Isa CurrentIsa() {
  static const Isa isa = dense_snns_simd::DetectIsa(Isa::kAvx512);
  return isa;
}

#ifdef DSNN_X86_DISPATCH
#define DSNN_DISPATCH(NAME, ...)                                          \
  switch (CurrentIsa()) {                                                 \
    case Isa::kAvx512: NAME##Avx512<T>(__VA_ARGS__); break;               \
    case Isa::kAvx2: NAME##Avx2<T>(__VA_ARGS__); break;                   \
    default: NAME##Generic<T>(__VA_ARGS__); break;                        \
  }
#else
#define DSNN_DISPATCH(NAME, ...) NAME##Generic<T>(__VA_ARGS__);
#endif

// ------------------------------------------------------------------------------------------
// kernels
// ------------------------------------------------------------------------------------------

// Scratch memory for `parts` packed blocks of n_in x block width elements.
template <typename T>
static T* AllocateScratch(OpKernelContext* ctx, i64 parts, i64 n_in, int block_lines, Tensor* holder) {
  const i64 size = std::max<i64>(1, parts * n_in * block_lines * Line<T>::kLanes);
  dsnn::Status status = ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value, TensorShape({size}), holder);
  if (!status.ok()) {
    ctx->CtxFailure(__FILE__, __LINE__, status);
    return nullptr;
  }
  return holder->flat<T>().data();
}

// The forward op; with kPacked (DenseSnnsSparseLinearPacked) the weights come packed
// [blocks, N_in, width] and the parts split the blocks instead of packing them.
template <typename T, bool kPacked>
class SparseLinearOp : public OpKernel {
 public:
  explicit SparseLinearOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    if (kPacked) OP_REQUIRES_OK(ctx, ctx->GetAttr("n_out", &n_out_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& ids = ctx->input(0);
    const Tensor& values = ctx->input(1);
    const Tensor& count = ctx->input(2);
    const Tensor& weights = ctx->input(3);
    if (kPacked) {
      OP_REQUIRES_OK(ctx, CheckPackedShapes<T>(ids, &values, count, weights, n_out_, nullptr));
    } else {
      OP_REQUIRES_OK(ctx, CheckShapes(ids, &values, count, weights, nullptr));
    }
    const i64 m_rows = ids.dim_size(0);
    const i64 n_in = weights.dim_size(kPacked ? 1 : 0);
    const i64 n_out = kPacked ? static_cast<i64>(n_out_) : weights.dim_size(1);
    i64 total = 0;
    OP_REQUIRES_OK(ctx, CheckValues(ids, count, n_in, &total));

    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m_rows, n_out}), &output));
    if (m_rows == 0 || n_out == 0) return;

    const Spikes s{ids.flat<i32>().data(), count.flat<i32>().data(), ids.dim_size(1)};
    const T* v = values.flat<T>().data();
    const T* w = weights.flat<T>().data();
    T* out = output->flat<T>().data();

    // parts = column parts (cache lines, or packed blocks) x row parts, column-major so that
    // one thread keeps its columns
    const i64 units = kPacked ? weights.dim_size(0) : (n_out + Line<T>::kLanes - 1) / Line<T>::kLanes;
    const i64 threads = (total * n_out < kMinParallelWork) ? 1 : NumThreads(ctx);
    const i64 col_parts = std::min(threads, units);
    const i64 row_parts = std::min(m_rows, std::max<i64>(1, threads / col_parts));
    const i64 parts = col_parts * row_parts;
    const int block_lines = BlockLines(n_in);
    const bool pack = !kPacked && WorthPacking(total / row_parts, n_in);
    Tensor scratch_holder;
    T* scratch = nullptr;
    if (pack) {
      scratch = AllocateScratch<T>(ctx, parts, n_in, block_lines, &scratch_holder);
      if (scratch == nullptr) return;
    }
    const i64 scratch_size = n_in * block_lines * Line<T>::kLanes;
    const int nv = kPacked ? static_cast<int>(weights.dim_size(2) / Line<T>::kLanes) : 0;
    const i64 cost = std::max<i64>(1, (total + m_rows + (pack ? n_in : 0)) * n_out / parts);
    RunParts(ctx, parts, cost, [&](i64 begin, i64 end) {
      for (i64 p = begin; p < end; ++p) {
        const i64 cp = p / row_parts, rp = p % row_parts;
        const i64 r0 = m_rows * rp / row_parts, r1 = m_rows * (rp + 1) / row_parts;
        if (kPacked) {
          const i64 b0 = units * cp / col_parts, b1 = units * (cp + 1) / col_parts;
          if (b0 < b1 && r0 < r1) {
            DSNN_DISPATCH(ForwardPacked, s, v, w, n_in, n_out, nv, b0, b1, r0, r1, out)
          }
          continue;
        }
        i64 cb, ce;
        ColumnRange<T>(n_out, cp, col_parts, &cb, &ce);
        T* part_scratch = pack ? scratch + p * scratch_size : nullptr;
        if (cb < ce && r0 < r1) {
          DSNN_DISPATCH(Forward, s, v, w, n_in, n_out, cb, ce, r0, r1, block_lines, pack, part_scratch, out)
        }
      }
    });
  }

 private:
  int n_out_ = 0;  // kPacked only
};

// One pass over the spikes: checks count in [0, K] and ids in [0, N_in), sets start[i + 1] to
// the number of nonzero-valued entries of input i and start to their prefix sums (CSR row
// starts), and total to sum(count). Returns false at the first bad entry (start is then
// incomplete); the caller reports it with CheckValues' message.
template <typename T>
static bool CountNonzeroPerInput(const i32* id, const i32* cnt, const T* v, i64 m_rows, i64 k_cap, i64 n_in,
                                 i64* start, i64* total) {
  std::fill(start, start + n_in + 1, i64(0));
  i64 sum = 0;
  for (i64 m = 0; m < m_rows; ++m) {
    const i64 c = cnt[m];
    if (c < 0 || c > k_cap) return false;
    const i32* row_ids = id + m * k_cap;
    const T* row_values = v + m * k_cap;
    for (i64 k = 0; k < c; ++k) {
      const i32 i = row_ids[k];
      if (i < 0 || static_cast<i64>(i) >= n_in) return false;
      start[i + 1] += (row_values[k] != T(0));
    }
    sum += c;
  }
  for (i64 i = 0; i < n_in; ++i) start[i + 1] += start[i];
  *total = sum;
  return true;
}

template <typename T>
class SparseLinearGradWeightsOp : public OpKernel {
 public:
  explicit SparseLinearGradWeightsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& ids = ctx->input(0);
    const Tensor& values = ctx->input(1);
    const Tensor& count = ctx->input(2);
    const Tensor& grad = ctx->input(3);
    const Tensor& weights = ctx->input(4);
    OP_REQUIRES_OK(ctx, CheckShapes(ids, &values, count, weights, &grad));
    const i64 m_rows = ids.dim_size(0);
    const i64 k_cap = ids.dim_size(1);
    const i64 n_in = weights.dim_size(0);
    const i64 n_out = weights.dim_size(1);
    // Events sorted by input neuron (counting sort, stable in m). Entries of value 0
    // (gradient-only entries of a selection) add nothing to dw and are left out.
    Tensor start_t, next_t, events_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT64, TensorShape({n_in + 1}), &start_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT64, TensorShape({n_in}), &next_t));
    i64* start = reinterpret_cast<i64*>(start_t.flat<int64_t>().data());
    i64* next = reinterpret_cast<i64*>(next_t.flat<int64_t>().data());
    const i32* id = ids.flat<i32>().data();
    const i32* cnt = count.flat<i32>().data();
    const T* v = values.flat<T>().data();
    i64 total = 0;
    if (!CountNonzeroPerInput(id, cnt, v, m_rows, k_cap, n_in, start, &total)) {
      OP_REQUIRES_OK(ctx, CheckValues(ids, count, n_in, &total));  // the message of the first bad entry
      ctx->CtxFailure(__FILE__, __LINE__, tensorflow::errors::Internal("inconsistent checks of `ids`/`count`"));
      return;
    }
    const i64 nonzero = start[n_in];
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT8,
                                           TensorShape({std::max<i64>(nonzero, 1) * static_cast<i64>(sizeof(Event<T>))}),
                                           &events_t));
    Event<T>* events = reinterpret_cast<Event<T>*>(events_t.flat<int8_t>().data());
    std::memcpy(next, start, sizeof(i64) * n_in);
    for (i64 m = 0; m < m_rows; ++m) {
      const i32* row_ids = id + m * k_cap;
      const T* row_values = v + m * k_cap;
      for (i64 k = 0, c = cnt[m]; k < c; ++k) {
        const T value = row_values[k];
        if (value == T(0)) continue;
        events[next[row_ids[k]]++] = Event<T>{static_cast<i32>(m), value};
      }
    }

    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n_in, n_out}), &output));
    if (n_in == 0 || n_out == 0) return;
    T* dw = output->flat<T>().data();
    const Csr<T> csr{start, events};
    const T* g = grad.flat<T>().data();

    // Each part owns a column range of dw (starting on a cache line): no two threads write
    // the same memory, so no atomics and no false sharing. Blocks are as wide as the packed
    // tile of grad (tile_rows x width) allows within the budget.
    const i64 lines = (n_out + Line<T>::kLanes - 1) / Line<T>::kLanes;
    const i64 threads = ((total + n_in) * n_out < kMinParallelWork) ? 1 : NumThreads(ctx);
    const i64 parts = std::min(threads, lines);
    const int block_lines = BlockLines(std::max<i64>(m_rows, 1));
    const i64 tile_rows = std::max<i64>(1, kPackBudgetBytes / (64 * block_lines));
    const i64 scratch_size = std::min(tile_rows, std::max<i64>(m_rows, 1)) * block_lines * Line<T>::kLanes;
    Tensor scratch_t, cursor_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                           TensorShape({parts * scratch_size}), &scratch_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT64, TensorShape({parts * n_in}), &cursor_t));
    T* scratch = scratch_t.flat<T>().data();
    i64* cursors = reinterpret_cast<i64*>(cursor_t.flat<int64_t>().data());
    const i64 cost = std::max<i64>(1, (total + m_rows + n_in) * n_out / parts);
    RunParts(ctx, parts, cost, [&](i64 begin, i64 end) {
      for (i64 p = begin; p < end; ++p) {
        i64 cb, ce;
        ColumnRange<T>(n_out, p, parts, &cb, &ce);
        if (cb < ce) {
          DSNN_DISPATCH(GradWeights, csr, m_rows, g, n_in, n_out, cb, ce, block_lines, tile_rows,
                        scratch + p * scratch_size, cursors + p * n_in, dw)
        }
      }
    });
  }
};

// The values-gradient op; with kPacked (DenseSnnsSparseLinearPackedGradValues) the weights
// come packed [blocks, N_in, width].
template <typename T, bool kPacked>
class SparseLinearGradValuesOp : public OpKernel {
 public:
  explicit SparseLinearGradValuesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& ids = ctx->input(0);
    const Tensor& count = ctx->input(1);
    const Tensor& weights = ctx->input(2);
    const Tensor& grad = ctx->input(3);
    if (kPacked) {
      OP_REQUIRES(ctx, grad.dims() == 2,
                  tensorflow::errors::InvalidArgument("`grad` must have rank 2 [M, N_out], got shape ",
                                                      grad.shape().DebugString()));
      OP_REQUIRES_OK(ctx, CheckPackedShapes<T>(ids, nullptr, count, weights, grad.dim_size(1), &grad));
    } else {
      OP_REQUIRES_OK(ctx, CheckShapes(ids, nullptr, count, weights, &grad));
    }
    const i64 m_rows = ids.dim_size(0);
    const i64 k_cap = ids.dim_size(1);
    const i64 n_in = weights.dim_size(kPacked ? 1 : 0);
    const i64 n_out = grad.dim_size(1);
    i64 total = 0;
    OP_REQUIRES_OK(ctx, CheckValues(ids, count, n_in, &total));

    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m_rows, k_cap}), &output));
    T* dv = output->flat<T>().data();
    std::fill(dv, dv + m_rows * k_cap, T(0));
    if (m_rows == 0 || k_cap == 0 || n_out == 0) return;

    const Spikes s{ids.flat<i32>().data(), count.flat<i32>().data(), k_cap};
    const T* w = weights.flat<T>().data();
    const T* g = grad.flat<T>().data();

    // Each part owns a row range of dv and walks all column blocks for it.
    const i64 threads = (total * n_out < kMinParallelWork) ? 1 : NumThreads(ctx);
    const i64 parts = std::min(threads, m_rows);
    const int block_lines = BlockLines(n_in);
    const bool pack = !kPacked && WorthPacking(total / parts, n_in);
    Tensor scratch_holder;
    T* scratch = nullptr;
    if (pack) {
      scratch = AllocateScratch<T>(ctx, parts, n_in, block_lines, &scratch_holder);
      if (scratch == nullptr) return;
    }
    const i64 scratch_size = n_in * block_lines * Line<T>::kLanes;
    const int nv = kPacked ? static_cast<int>(weights.dim_size(2) / Line<T>::kLanes) : 0;
    const i64 cost = std::max<i64>(1, (total + m_rows + (pack ? n_in : 0)) * n_out / parts);
    RunParts(ctx, parts, cost, [&](i64 begin, i64 end) {
      for (i64 p = begin; p < end; ++p) {
        const i64 r0 = m_rows * p / parts, r1 = m_rows * (p + 1) / parts;
        if (r0 >= r1) continue;
        if (kPacked) {
          DSNN_DISPATCH(GradValuesPacked, s, w, g, n_in, n_out, nv, r0, r1, dv)
        } else {
          T* part_scratch = pack ? scratch + p * scratch_size : nullptr;
          DSNN_DISPATCH(GradValues, s, w, g, n_in, n_out, r0, r1, block_lines, pack, part_scratch, dv)
        }
      }
    });
  }
};

// ------------------------------------------------------------------------------------------
// dense rows -> events
// ------------------------------------------------------------------------------------------

REGISTER_OP("DenseSnnsDenseToEvents")
    .Input("x: T")
    .Output("ids: int32")
    .Output("values: T")
    .Output("count: int32")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
      DimensionHandle k = c->UnknownDim();
      c->set_output(0, c->Matrix(c->Dim(x, 0), k));
      c->set_output(1, c->Matrix(c->Dim(x, 0), k));
      c->set_output(2, c->Vector(c->Dim(x, 0)));
      return dsnn::OkStatus();
    })
    .Doc(R"doc(
The nonzero entries of every row of x [M, N_in], in column order: ids[m, k] (their columns),
values[m, k] (their values) for k < count[m]; K = max(1, max_m count[m]); padding entries
have id 0 and value 0. Exact for any values (NaN counts as nonzero).
)doc");

// Nonzero entries of row[0, n) as 64-bit masks (bit j of word w: row[64 w + j] != 0; NaN is
// nonzero, -0 is zero); returns their number.
template <typename T>
static i64 NonzeroMasks(const T* row, i64 n, uint64_t* masks) {
  i64 c = 0;
  for (i64 w = 0; 64 * w < n; ++w) {
    const uint64_t bits = spikes_common::MaskWord(row + 64 * w, std::min<i64>(64, n - 64 * w),
                                                  spikes_common::Rule::kNonzero, T(0));
    if (masks != nullptr) masks[w] = bits;
    c += __builtin_popcountll(bits);
  }
  return c;
}

template <typename T>
class DenseToEventsOp : public OpKernel {
 public:
  explicit DenseToEventsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() == 2,
                tensorflow::errors::InvalidArgument("`x` must have rank 2 [M, N_in], got shape ",
                                                    x.shape().DebugString()));
    const i64 m_rows = x.dim_size(0), n_in = x.dim_size(1);
    OP_REQUIRES(ctx, m_rows <= static_cast<i64>(INT32_MAX) && n_in <= static_cast<i64>(INT32_MAX),
                tensorflow::errors::InvalidArgument("`x` of shape ", x.shape().DebugString(),
                                                    " is too large (at most 2^31 - 1 rows and columns)"));
    Tensor* count_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({m_rows}), &count_t));
    const i64 words = (n_in + 63) / 64;
    Tensor masks_t;  // pass 1 writes the masks of every row, pass 2 walks their set bits
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT64, TensorShape({std::max<i64>(1, m_rows * words)}),
                                           &masks_t));
    uint64_t* masks = reinterpret_cast<uint64_t*>(masks_t.flat<tensorflow::int64>().data());
    const T* xs = x.flat<T>().data();
    i32* count = count_t->flat<i32>().data();
    const i64 threads = (m_rows * n_in < kMinParallelWork) ? 1 : NumThreads(ctx);
    const i64 parts = std::max<i64>(1, std::min(threads, m_rows));
    RunParts(ctx, parts, std::max<i64>(1, m_rows * n_in / parts), [&](i64 begin, i64 end) {
      for (i64 p = begin; p < end; ++p) {
        for (i64 m = m_rows * p / parts; m < m_rows * (p + 1) / parts; ++m) {
          count[m] = static_cast<i32>(NonzeroMasks(xs + m * n_in, n_in, masks + m * words));
        }
      }
    });
    i64 k_cap = 1, total = 0;
    for (i64 m = 0; m < m_rows; ++m) {
      k_cap = std::max<i64>(k_cap, count[m]);
      total += count[m];
    }
    Tensor* ids_t = nullptr;
    Tensor* values_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m_rows, k_cap}), &ids_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({m_rows, k_cap}), &values_t));
    i32* ids = ids_t->flat<i32>().data();
    T* values = values_t->flat<T>().data();
    RunParts(ctx, parts, std::max<i64>(1, (m_rows * (words + k_cap) + total) / parts), [&](i64 begin, i64 end) {
      for (i64 p = begin; p < end; ++p) {
        for (i64 m = m_rows * p / parts; m < m_rows * (p + 1) / parts; ++m) {
          const T* row = xs + m * n_in;
          const uint64_t* row_masks = masks + m * words;
          i32* row_ids = ids + m * k_cap;
          T* row_values = values + m * k_cap;
          i64 k = 0;
          for (i64 w = 0; w < words; ++w) {
            for (uint64_t bits = row_masks[w]; bits != 0; bits &= bits - 1) {
              const i64 i = 64 * w + __builtin_ctzll(bits);
              row_ids[k] = static_cast<i32>(i);
              row_values[k++] = row[i];
            }
          }
          std::fill(row_ids + k, row_ids + k_cap, 0);
          std::fill(row_values + k, row_values + k_cap, T(0));
        }
      }
    });
  }
};

// ------------------------------------------------------------------------------------------
// activity of a dense input
// ------------------------------------------------------------------------------------------

REGISTER_OP("DenseSnnsNonzeroFraction")
    .Input("x: T")
    .Attr("sample: int = 65536")
    .Output("fraction: float")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
      c->set_output(0, c->Scalar());
      return dsnn::OkStatus();
    })
    .Doc(R"doc(
The fraction of nonzero entries of x [M, N] over evenly spaced rows holding about `sample`
entries (all rows when x is smaller); 0 for an empty x.
)doc");

template <typename T>
class NonzeroFractionOp : public OpKernel {
 public:
  explicit NonzeroFractionOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("sample", &sample_));
    OP_REQUIRES(ctx, sample_ > 0, tensorflow::errors::InvalidArgument("`sample` must be > 0, got ", sample_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() == 2,
                tensorflow::errors::InvalidArgument("`x` must have rank 2 [M, N], got shape ",
                                                    x.shape().DebugString()));
    const i64 m_rows = x.dim_size(0), n = x.dim_size(1);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &out));
    const i64 stride = std::max<i64>(1, m_rows * n / std::max<i64>(1, sample_));
    const T* xs = x.flat<T>().data();
    i64 nonzero = 0, seen = 0;
    for (i64 m = 0; m < m_rows; m += stride) {
      nonzero += NonzeroMasks<T>(xs + m * n, n, nullptr);
      seen += n;
    }
    out->scalar<float>()() = seen == 0 ? 0.0f : static_cast<float>(nonzero) / static_cast<float>(seen);
  }

 private:
  int sample_;
};

// One name per instantiation: the comma of a template argument list would split the macro's
// arguments.
template <typename T>
using PlainSparseLinearOp = SparseLinearOp<T, false>;
template <typename T>
using PackedSparseLinearOp = SparseLinearOp<T, true>;
template <typename T>
using PlainSparseLinearGradValuesOp = SparseLinearGradValuesOp<T, false>;
template <typename T>
using PackedSparseLinearGradValuesOp = SparseLinearGradValuesOp<T, true>;

#define DENSE_SNNS_REGISTER(T)                                                                    \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("DenseSnnsDenseToEvents").Device(DEVICE_CPU).TypeConstraint<T>("T"),                   \
      DenseToEventsOp<T>);                                                                        \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("DenseSnnsNonzeroFraction").Device(DEVICE_CPU).TypeConstraint<T>("T"),                 \
      NonzeroFractionOp<T>);                                                                      \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("DenseSnnsSparseLinear").Device(DEVICE_CPU).TypeConstraint<T>("T"),                    \
      PlainSparseLinearOp<T>);                                                                    \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("DenseSnnsSparseLinearGradWeights").Device(DEVICE_CPU).TypeConstraint<T>("T"),         \
      SparseLinearGradWeightsOp<T>);                                                              \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("DenseSnnsSparseLinearGradValues").Device(DEVICE_CPU).TypeConstraint<T>("T"),          \
      PlainSparseLinearGradValuesOp<T>);                                                          \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("DenseSnnsSparseLinearPacked").Device(DEVICE_CPU).TypeConstraint<T>("T"),              \
      PackedSparseLinearOp<T>);                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("DenseSnnsSparseLinearPackedGradValues").Device(DEVICE_CPU).TypeConstraint<T>("T"),    \
      PackedSparseLinearGradValuesOp<T>);

DENSE_SNNS_REGISTER(float)
DENSE_SNNS_REGISTER(double)

#undef DENSE_SNNS_REGISTER
#undef DSNN_DISPATCH
#undef DSNN_ENTRIES
#undef DSNN_INLINE
#undef DSNN_ALWAYS_INLINE

}  // namespace dense_snns_ops
