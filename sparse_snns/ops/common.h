// Helpers shared by the kernels of sparse_linear_ops.cc and select_ops.cc (one library): the
// checks of sparse-spike arguments. Everything is inline: each source includes this header.
// The vector types, the instruction-set detection and the split of work over TensorFlow's
// intra-op threads are those of every C++ kernel of the project (dense_snns/ops/simd.h).

#ifndef SPARSE_SNNS_OPS_COMMON_H_
#define SPARSE_SNNS_OPS_COMMON_H_

#include <algorithm>
#include <cstdint>
#include <functional>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"
#include "simd.h"

namespace sparse_snns_common {

typedef int64_t i64;
typedef int32_t i32;

// ids [M, K] (rank 2) and count [M].
inline absl::Status CheckSpikeShapes(const tensorflow::Tensor& ids, const tensorflow::Tensor& count) {
  if (ids.dims() != 2) {
    return tensorflow::errors::InvalidArgument("`ids` must have rank 2 [M, K], got shape ", ids.shape().DebugString());
  }
  const i64 m = ids.dim_size(0);
  if (count.dims() != 1 || count.dim_size(0) != m) {
    return tensorflow::errors::InvalidArgument("`count` must have shape [M] = [", m,
                                               "] (the first dimension of `ids`), got ", count.shape().DebugString());
  }
  return absl::OkStatus();
}

// count[m] in [0, K] and ids[m, k] in [0, n) for k < count[m] (shapes already checked).
// `bound` names n in the message ("N_in", "N"), `where` says what n is. Returns sum(count)
// in `total` (may be null).
inline absl::Status CheckValues(const tensorflow::Tensor& ids, const tensorflow::Tensor& count, i64 n,
                                const char* bound, const char* where, i64* total) {
  const i64 m_rows = ids.dim_size(0), k_cap = ids.dim_size(1);
  const i32* id = ids.flat<i32>().data();
  const i32* cnt = count.flat<i32>().data();
  i64 sum = 0;
  for (i64 m = 0; m < m_rows; ++m) {
    const i64 c = cnt[m];
    if (c < 0 || c > k_cap) {
      return tensorflow::errors::InvalidArgument("`count` must be in [0, K=", k_cap,
                                                 "] (K: the last dimension of `ids`), got count[", m, "] = ", c);
    }
    const i32* row = id + m * k_cap;
    for (i64 k = 0; k < c; ++k) {
      if (row[k] < 0 || static_cast<i64>(row[k]) >= n) {
        return tensorflow::errors::InvalidArgument("`ids` out of range: ids[", m, ", ", k, "] = ", row[k],
                                                   " is not in [0, ", bound, "=", n, ") (", bound, ": ", where, ")");
      }
    }
    sum += c;
  }
  if (total != nullptr) *total = sum;
  return absl::OkStatus();
}

}  // namespace sparse_snns_common

#endif  // SPARSE_SNNS_OPS_COMMON_H_
