// CPU kernels of spike selection and of the row gathers/scatters around it.
//
// Three ops (T: float32 or float64), all on rows of a matrix x [M, N]:
//
//   DenseSnnsSelectSpikes (x, second_threshold) -> ids int32 [M, Ke], count int32 [M], first_total int32 [M]
//     Ke = min(capacity, N). Per row: the indices i of the "first" rule
//     (x > 0 or NaN, or x != 0 with first="nonzero") in increasing order, then, if second is "all"
//     or "above", the other indices (all of them, or those with x > second_threshold) in
//     increasing order, until Ke slots are filled. count = number of filled slots;
//     first_total = number of indices of the first rule (also those that did not fit), so
//     overflow is exact: dropped = first_total - min(first_total, Ke). Unused slots hold 0.
//     One pass over x for the first rule; second = "above" reads the row again (only until
//     the slots are full) for its compares.
//   DenseSnnsGatherRows (x [M, N], ids [M, K], count [M]) -> [M, K]
//     out[m, k] = x[m, ids[m, k]] for k < count[m], else 0.
//   DenseSnnsScatterRows (ids [M, K], count [M], updates [M, K]; num_columns N) -> [M, N]
//     out[m, ids[m, k]] += updates[m, k] for k < count[m], everything else 0.
//
// GatherRows and ScatterRows are each other's gradient. The selection is what the pure-TF
// `compact_indices` computes with prefix sums and a segment max over [M, N]; here each row is
// turned into bit masks (64 neurons per word, vector compares) whose set bits are extracted
// in increasing order (count-trailing-zeros), so the cost is O(N / vector width + K) per row.
// Rows are split among TensorFlow's intra-op threads; results do not depend on the thread
// count.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/work_sharder.h"
#include "spikes_common.h"

namespace dense_snns_select_ops {

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
// op registration
// ------------------------------------------------------------------------------------------

REGISTER_OP("DenseSnnsSelectSpikes")
    .Input("x: T")
    .Input("second_threshold: T")
    .Output("ids: int32")
    .Output("count: int32")
    .Output("first_total: int32")
    .Output("selected: T")
    .Attr("T: {float, double}")
    .Attr("capacity: int >= 1")
    .Attr("first: {'positive', 'nonzero'} = 'positive'")
    .Attr("second: {'none', 'all', 'above'} = 'none'")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, threshold;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 0, &threshold));
      int capacity = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("capacity", &capacity));
      DimensionHandle n = c->Dim(x, 1);
      DimensionHandle k = c->UnknownDim();
      if (c->ValueKnown(n)) k = c->MakeDim(std::min<i64>(capacity, c->Value(n)));
      c->set_output(0, c->Matrix(c->Dim(x, 0), k));
      c->set_output(1, c->Vector(c->Dim(x, 0)));
      c->set_output(2, c->Vector(c->Dim(x, 0)));
      c->set_output(3, c->Matrix(c->Dim(x, 0), k));
      return dsnn::OkStatus();
    })
    .Doc(R"doc(
Selects up to min(capacity, N) indices per row of x [M, N]: first-rule indices in increasing
order, then (second = all | above) the others in increasing order; `second_threshold` (a
scalar) is used by second = above only. `selected` holds x at the selected indices (0 at
unused slots): the gather that follows a selection, done while the row is in cache.
)doc");

static dsnn::Status RowsShape(InferenceContext* c, int ids_index, int count_index, DimensionHandle* m,
                              DimensionHandle* k) {
  ShapeHandle ids, count;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(ids_index), 2, &ids));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(count_index), 1, &count));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(ids, 0), c->Dim(count, 0), m));
  *k = c->Dim(ids, 1);
  return dsnn::OkStatus();
}

REGISTER_OP("DenseSnnsGatherRows")
    .Input("x: T")
    .Input("ids: int32")
    .Input("count: int32")
    .Output("output: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
      DimensionHandle m, k, unused;
      TF_RETURN_IF_ERROR(RowsShape(c, 1, 2, &m, &k));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, 0), m, &unused));
      c->set_output(0, c->Matrix(m, k));
      return dsnn::OkStatus();
    })
    .Doc(R"doc(
output[m, k] = x[m, ids[m, k]] for k < count[m], else 0.
)doc");

REGISTER_OP("DenseSnnsScatterRows")
    .Input("ids: int32")
    .Input("count: int32")
    .Input("updates: T")
    .Output("output: T")
    .Attr("T: {float, double}")
    .Attr("num_columns: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle m, k, unused;
      TF_RETURN_IF_ERROR(RowsShape(c, 0, 1, &m, &k));
      ShapeHandle updates;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &updates));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(updates, 0), m, &unused));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(updates, 1), k, &unused));
      int n = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("num_columns", &n));
      c->set_output(0, c->Matrix(m, n));
      return dsnn::OkStatus();
    })
    .Doc(R"doc(
output [M, num_columns]: zeros, then output[m, ids[m, k]] += updates[m, k] for k < count[m].
)doc");

// ------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------

// Below this much work (rows * cost per row) a kernel runs on the calling thread.
static const i64 kMinParallelCost = 1 << 15;

// Runs fn(begin, end) over `rows` rows on the intra-op thread pool (cost: per row).
static void ForRows(OpKernelContext* ctx, i64 rows, i64 cost_per_row, const std::function<void(i64, i64)>& fn) {
  dense_snns_simd::RunParts(ctx, rows, cost_per_row, fn, kMinParallelCost);
}

// ids [M, K] and count [M]; count in [0, K], ids of valid entries in [0, n).
static dsnn::Status CheckRows(const Tensor& ids, const Tensor& count, i64 n) {
  TF_RETURN_IF_ERROR(spikes_common::CheckSpikeShapes(ids, count));
  return spikes_common::CheckValues(ids, count, n, "N", "the number of columns of the dense rows", nullptr);
}

using spikes_common::Holds;
using spikes_common::MaskWord;
using spikes_common::Rule;
using spikes_common::SelectRow;

// ------------------------------------------------------------------------------------------
// kernels
// ------------------------------------------------------------------------------------------

template <typename T>
class SelectSpikesOp : public OpKernel {
 public:
  explicit SelectSpikesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    int capacity = 0;
    std::string first, second;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("capacity", &capacity));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("first", &first));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("second", &second));
    capacity_ = capacity;
    nonzero_ = first == "nonzero";
    second_ = second == "all" ? 1 : (second == "above" ? 2 : 0);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& threshold_t = ctx->input(1);
    OP_REQUIRES(ctx, x.dims() == 2,
                tensorflow::errors::InvalidArgument("`x` must have rank 2 [M, N], got shape ", x.shape().DebugString()));
    OP_REQUIRES(ctx, threshold_t.dims() == 0,
                tensorflow::errors::InvalidArgument("`second_threshold` must be a scalar, got shape ",
                                                    threshold_t.shape().DebugString()));
    const i64 m_rows = x.dim_size(0), n = x.dim_size(1);
    OP_REQUIRES(ctx, n <= static_cast<i64>(INT32_MAX),
                tensorflow::errors::InvalidArgument("`x` has ", n, " columns; at most 2^31 - 1 are supported"));
    const i64 k_eff = std::min<i64>(capacity_, n);
    Tensor *ids_t = nullptr, *count_t = nullptr, *first_t = nullptr, *selected_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m_rows, k_eff}), &ids_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({m_rows}), &count_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({m_rows}), &first_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({m_rows, k_eff}), &selected_t));
    if (m_rows == 0) return;
    const T* xs = x.flat<T>().data();
    T* selected = selected_t->flat<T>().data();
    i32* ids = ids_t->flat<i32>().data();
    i32* count = count_t->flat<i32>().data();
    i32* first_total = first_t->flat<i32>().data();
    const bool nonzero = nonzero_;
    const int second = second_;
    const T threshold = threshold_t.scalar<T>()();

    const Rule first_rule = nonzero ? Rule::kNonzero : Rule::kPositive;
    const i64 words = (n + 63) / 64;

    // Per row: the first-rule bit masks of the row (64 neurons per word), their set bits in
    // increasing order, then the free slots from the complement (restricted to x > threshold
    // for "above"), stopping as soon as the slots are full.
    ForRows(ctx, m_rows, n / 4 + k_eff, [&](i64 begin, i64 end) {
      std::vector<uint64_t> masks(static_cast<size_t>(words));
      for (i64 m = begin; m < end; ++m) {
        const T* row = xs + m * n;
        i32* out = ids + m * k_eff;
        i64 found = 0;
        const i64 filled = SelectRow(row, n, k_eff, first_rule, second, threshold, masks.data(), out, &found);
        std::fill(out + filled, out + k_eff, i32(0));
        T* sel = selected + m * k_eff;
        for (i64 k = 0; k < filled; ++k) sel[k] = row[out[k]];
        std::fill(sel + filled, sel + k_eff, T(0));
        count[m] = static_cast<i32>(filled);
        first_total[m] = static_cast<i32>(found);
      }
    });
  }

 private:
  i64 capacity_ = 1;
  bool nonzero_ = false;
  int second_ = 0;
};

template <typename T>
class GatherRowsOp : public OpKernel {
 public:
  explicit GatherRowsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& ids = ctx->input(1);
    const Tensor& count = ctx->input(2);
    OP_REQUIRES(ctx, x.dims() == 2,
                tensorflow::errors::InvalidArgument("`x` must have rank 2 [M, N], got shape ", x.shape().DebugString()));
    OP_REQUIRES_OK(ctx, CheckRows(ids, count, x.dim_size(1)));
    const i64 m_rows = ids.dim_size(0), k_cap = ids.dim_size(1), n = x.dim_size(1);
    OP_REQUIRES(ctx, x.dim_size(0) == m_rows,
                tensorflow::errors::InvalidArgument("`x` must have M = ", m_rows, " rows (those of `ids`), got shape ",
                                                    x.shape().DebugString()));
    Tensor* out_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m_rows, k_cap}), &out_t));
    const T* xs = x.flat<T>().data();
    const i32* id = ids.flat<i32>().data();
    const i32* cnt = count.flat<i32>().data();
    T* out = out_t->flat<T>().data();
    ForRows(ctx, m_rows, k_cap + 1, [&](i64 begin, i64 end) {
      for (i64 m = begin; m < end; ++m) {
        const T* row = xs + m * n;
        const i32* r = id + m * k_cap;
        T* o = out + m * k_cap;
        const i64 c = cnt[m];
        for (i64 k = 0; k < c; ++k) o[k] = row[r[k]];
        std::fill(o + c, o + k_cap, T(0));
      }
    });
  }
};

template <typename T>
class ScatterRowsOp : public OpKernel {
 public:
  explicit ScatterRowsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    int n = 0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_columns", &n));
    n_ = n;
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& ids = ctx->input(0);
    const Tensor& count = ctx->input(1);
    const Tensor& updates = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckRows(ids, count, n_));
    OP_REQUIRES(ctx, updates.shape() == ids.shape(),
                tensorflow::errors::InvalidArgument("`updates` must have the shape of `ids` ", ids.shape().DebugString(),
                                                    ", got ", updates.shape().DebugString()));
    const i64 m_rows = ids.dim_size(0), k_cap = ids.dim_size(1), n = n_;
    Tensor* out_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m_rows, n}), &out_t));
    const i32* id = ids.flat<i32>().data();
    const i32* cnt = count.flat<i32>().data();
    const T* u = updates.flat<T>().data();
    T* out = out_t->flat<T>().data();
    ForRows(ctx, m_rows, n + k_cap, [&](i64 begin, i64 end) {
      for (i64 m = begin; m < end; ++m) {
        T* o = out + m * n;
        std::fill(o, o + n, T(0));
        const i32* r = id + m * k_cap;
        const T* v = u + m * k_cap;
        const i64 c = cnt[m];
        for (i64 k = 0; k < c; ++k) o[r[k]] += v[k];
      }
    });
  }

 private:
  i64 n_ = 1;
};

#define DENSE_SNNS_REGISTER(T)                                                                            \
  REGISTER_KERNEL_BUILDER(Name("DenseSnnsSelectSpikes").Device(DEVICE_CPU).TypeConstraint<T>("T"),          \
                          SelectSpikesOp<T>);                                                             \
  REGISTER_KERNEL_BUILDER(Name("DenseSnnsGatherRows").Device(DEVICE_CPU).TypeConstraint<T>("T"),            \
                          GatherRowsOp<T>);                                                               \
  REGISTER_KERNEL_BUILDER(Name("DenseSnnsScatterRows").Device(DEVICE_CPU).TypeConstraint<T>("T"),           \
                          ScatterRowsOp<T>);

DENSE_SNNS_REGISTER(float)
DENSE_SNNS_REGISTER(double)

#undef DENSE_SNNS_REGISTER

}  // namespace dense_snns_select_ops
