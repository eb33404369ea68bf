// Helpers shared by the kernels of event_linear_ops.cc and lif_ops.cc (dense_snns) and
// select_ops.cc (sparse_snns): the checks of sparse-spike arguments, the bit masks of 64
// entries that hold a rule (nonzero, positive, above a threshold), by vector compares, and
// the selection of a row's entries into a fixed number of slots. Everything is
// inline: each source includes this header.
// The vector types, the instruction-set detection and the split of work over TensorFlow's
// intra-op threads are those of every C++ kernel of the project (dense_snns/ops/simd.h).

#ifndef DENSE_SNNS_OPS_SPIKES_COMMON_H_
#define DENSE_SNNS_OPS_SPIKES_COMMON_H_

#include <algorithm>
#include <cstdint>
#include <functional>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"
#include "simd.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace spikes_common {

typedef int64_t i64;
typedef int32_t i32;

// ids [M, K] (rank 2) and count [M].
inline dsnn::Status CheckSpikeShapes(const tensorflow::Tensor& ids, const tensorflow::Tensor& count) {
  if (ids.dims() != 2) {
    return tensorflow::errors::InvalidArgument("`ids` must have rank 2 [M, K], got shape ", ids.shape().DebugString());
  }
  const i64 m = ids.dim_size(0);
  if (count.dims() != 1 || count.dim_size(0) != m) {
    return tensorflow::errors::InvalidArgument("`count` must have shape [M] = [", m,
                                               "] (the first dimension of `ids`), got ", count.shape().DebugString());
  }
  return dsnn::OkStatus();
}

// count[m] in [0, K] and ids[m, k] in [0, n) for k < count[m] (shapes already checked).
// `bound` names n in the message ("N_in", "N"), `where` says what n is. Returns sum(count)
// in `total` (may be null).
inline dsnn::Status CheckValues(const tensorflow::Tensor& ids, const tensorflow::Tensor& count, i64 n,
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
  return dsnn::OkStatus();
}

// Predicates of the selection rules.
enum class Rule { kPositive, kNonzero, kAbove };

template <typename T>
inline bool Holds(Rule rule, T v, T threshold) {
  switch (rule) {
    case Rule::kPositive: return !(v <= T(0));  // NaN too: a NaN membrane is selected, so it surfaces
    case Rule::kNonzero: return v != T(0);
    default: return v > threshold;
  }
}

// Bit j of the result: rule(p[j]) for j < len (len <= 64).
template <typename T>
inline uint64_t MaskWordScalar(const T* p, i64 len, Rule rule, T threshold) {
  uint64_t bits = 0;
  for (i64 j = 0; j < len; ++j) bits |= static_cast<uint64_t>(Holds(rule, p[j], threshold)) << j;
  return bits;
}

template <typename T>
inline uint64_t MaskWord(const T* p, i64 len, Rule rule, T threshold) {
  return MaskWordScalar(p, len, rule, threshold);
}

#if defined(__SSE2__)
// 64 comparisons as 16 (float) or 32 (double) vector compares + movemask. The compares are
// the IEEE ones of the scalar code: !(NaN <= 0) and NaN != 0 are true, NaN > t is false.
template <>
inline uint64_t MaskWord<float>(const float* p, i64 len, Rule rule, float threshold) {
  if (len < 64) return MaskWordScalar(p, len, rule, threshold);
  const __m128 ref = _mm_set1_ps(rule == Rule::kAbove ? threshold : 0.0f);
  uint64_t bits = 0;
  for (int j = 0; j < 64; j += 4) {
    const __m128 v = _mm_loadu_ps(p + j);
    const __m128 c = rule == Rule::kNonzero    ? _mm_cmpneq_ps(v, ref)
                     : rule == Rule::kPositive ? _mm_cmpnle_ps(v, ref)
                                               : _mm_cmpgt_ps(v, ref);
    bits |= static_cast<uint64_t>(_mm_movemask_ps(c)) << j;
  }
  return bits;
}

template <>
inline uint64_t MaskWord<double>(const double* p, i64 len, Rule rule, double threshold) {
  if (len < 64) return MaskWordScalar(p, len, rule, threshold);
  const __m128d ref = _mm_set1_pd(rule == Rule::kAbove ? threshold : 0.0);
  uint64_t bits = 0;
  for (int j = 0; j < 64; j += 2) {
    const __m128d v = _mm_loadu_pd(p + j);
    const __m128d c = rule == Rule::kNonzero    ? _mm_cmpneq_pd(v, ref)
                      : rule == Rule::kPositive ? _mm_cmpnle_pd(v, ref)
                                                : _mm_cmpgt_pd(v, ref);
    bits |= static_cast<uint64_t>(_mm_movemask_pd(c)) << j;
  }
  return bits;
}
#endif

// Appends the set bits of `bits` (offset by `base`) to out[filled..] until `cap` slots are
// filled; returns the new fill level.
inline i64 Extract(uint64_t bits, i64 base, i32* out, i64 filled, i64 cap) {
  while (bits != 0 && filled < cap) {
    out[filled++] = static_cast<i32>(base + __builtin_ctzll(bits));
    bits &= bits - 1;
  }
  return filled;
}

// The selection of one row x [n] into k_eff slots: the indices of the `first` rule in
// increasing order, then, for second = 1 ("all") or 2 ("above": x > threshold), the other
// indices in increasing order, until the slots are full. Writes the ids to out[0, filled),
// the number of first-rule indices (also those that did not fit) to *found, and returns
// `filled`. `masks` is scratch of (n + 63) / 64 words. The first-rule masks are built by
// vector compares, 64 entries per word, and their set bits extracted in increasing order, so
// the cost is O(n / vector width + k_eff).
template <typename T>
inline i64 SelectRow(const T* row, i64 n, i64 k_eff, Rule first, int second, T threshold, uint64_t* masks, i32* out,
                     i64* found) {
  const i64 words = (n + 63) / 64;
  i64 filled = 0, total = 0;
  for (i64 w = 0; w < words; ++w) {
    const i64 len = std::min<i64>(64, n - 64 * w);
    const uint64_t bits = MaskWord(row + 64 * w, len, first, threshold);
    masks[w] = bits;
    total += __builtin_popcountll(bits);
    filled = Extract(bits, 64 * w, out, filled, k_eff);
  }
  for (i64 w = 0; second != 0 && w < words && filled < k_eff; ++w) {
    const i64 len = std::min<i64>(64, n - 64 * w);
    uint64_t bits = ~masks[w];
    if (len < 64) bits &= (uint64_t(1) << len) - 1;
    if (second == 2) bits &= MaskWord(row + 64 * w, len, Rule::kAbove, threshold);
    filled = Extract(bits, 64 * w, out, filled, k_eff);
  }
  *found = total;
  return filled;
}

}  // namespace spikes_common

#endif  // DENSE_SNNS_OPS_SPIKES_COMMON_H_
