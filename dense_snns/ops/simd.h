// What the C++ kernels of dense_snns and sparse_snns share: GCC/Clang vector types and their
// unaligned loads and stores, the detection of the CPU's instruction set (each library
// compiles its loops once per instruction set and picks one at load time), and the split of
// work over TensorFlow's intra-op threads, and the Status type of the TensorFlow version
// built against. Every source includes this header; it is built into each library
// (dense_snns/ops/*.cc; sparse_snns/ops/*.cc via -I).

#ifndef DENSE_SNNS_OPS_SIMD_H_
#define DENSE_SNNS_OPS_SIMD_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/public/version.h"
#include "tensorflow/core/util/work_sharder.h"

// Shape functions and checks return TensorFlow's own Status class before TensorFlow 2.13
// (e.g. 2.6, Graphcore's base) and absl::Status from then on.
namespace dsnn {
#if TF_MAJOR_VERSION == 2 && TF_MINOR_VERSION < 13
using Status = ::tensorflow::Status;
inline Status OkStatus() { return Status(); }
#else
using Status = ::absl::Status;
inline Status OkStatus() { return ::absl::OkStatus(); }
#endif
}  // namespace dsnn

// The inner loops are force-inlined into one entry point per instruction set, where the
// compiler generates code for that instruction set.
#if defined(__GNUC__) || defined(__clang__)
#define DSNN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define DSNN_ALWAYS_INLINE inline
#endif
#define DSNN_INLINE static DSNN_ALWAYS_INLINE

// x86-64 builds carry AVX2 (and, where a library has them, AVX-512) entry points besides the
// generic SSE2 ones.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define DSNN_X86_DISPATCH 1
#endif

namespace dense_snns_simd {

typedef int64_t i64;

// A vector of `Bytes` bytes of T (16, 32 or 64: the register width of the instruction set;
// a wider type than the registers makes GCC spill it to memory).
template <typename T, int Bytes>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
};

// Loads and stores go through memcpy: no alignment is assumed (the compiler emits unaligned
// vector moves).
template <typename V, typename T>
DSNN_INLINE V LoadV(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
DSNN_INLINE void StoreV(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

// The same with the lane count and a broadcast, for loops written per vector of VB bytes.
template <typename T, int VB>
struct Vec {
  typedef typename VecOf<T, VB>::type V;
  static constexpr int kLanes = VB / static_cast<int>(sizeof(T));
  static DSNN_ALWAYS_INLINE V Load(const T* p) { return LoadV<V>(p); }
  static DSNN_ALWAYS_INLINE void Store(T* p, V v) { StoreV(p, v); }
  static DSNN_ALWAYS_INLINE V Splat(T x) {
    V v;
    for (int i = 0; i < kLanes; ++i) v[i] = x;
    return v;
  }
};

enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// The best instruction set of this CPU, at most `highest` (the widest entry points of the
// calling library): AVX2 needs AVX2 and FMA, AVX-512 also AVX512F and AVX512VL.
// DENSE_SNNS_ISA=generic|avx2|avx512 lowers it (for tests and benchmarks; a request above
// what the CPU supports is ignored).
inline Isa DetectIsa(Isa highest) {
  Isa best = Isa::kGeneric;
#ifdef DSNN_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
  if (best == Isa::kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
    best = Isa::kAvx512;
  }
#endif
  const char* request = std::getenv("DENSE_SNNS_ISA");
  if (request != nullptr) {
    Isa wanted = best;
    if (std::strcmp(request, "generic") == 0) wanted = Isa::kGeneric;
    if (std::strcmp(request, "avx2") == 0) wanted = Isa::kAvx2;
    if (std::strcmp(request, "avx512") == 0) wanted = Isa::kAvx512;
    if (static_cast<int>(wanted) < static_cast<int>(best)) best = wanted;
  }
  return static_cast<int>(best) < static_cast<int>(highest) ? best : highest;
}

inline int NumThreads(tensorflow::OpKernelContext* ctx) {
  const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  return threads == nullptr ? 1 : std::max(1, threads->num_threads);
}

// Runs fn(begin, end) over `parts` units of work of `cost_per_part` each on the intra-op
// thread pool; on the calling thread when there is one part, one thread, or less than
// `min_total_cost` work in all.
inline void RunParts(tensorflow::OpKernelContext* ctx, i64 parts, i64 cost_per_part,
                     const std::function<void(i64, i64)>& fn, i64 min_total_cost = 0) {
  const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  if (parts <= 1 || threads == nullptr || threads->num_threads <= 1 || parts * cost_per_part < min_total_cost) {
    fn(0, parts);
    return;
  }
  tensorflow::Shard(threads->num_threads, threads->workers, parts, cost_per_part, fn);
}

}  // namespace dense_snns_simd

#endif  // DENSE_SNNS_OPS_SIMD_H_
