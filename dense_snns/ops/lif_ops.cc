// The LIF recurrence of a whole sequence as two CPU kernels: the forward pass and its
// reverse-time gradient (BPTT with a surrogate spike derivative). Also the leaky integrator
// of the readouts (`neurons.leaky_integrator_step`: v = beta * v + (I + bias), output v),
// whose gradient reads the outputs it produced (they are the membranes) instead of
// recomputing them.
//
// These kernels compute exactly what `dense_snns.neurons.lif_step` computes (with the bias
// added to the current first, as `fused.BlockStep` does); tests compare them with the
// compiled loops of `dense_snns.fused` built on that function. Per step and unit:
//
//   x = beta * v + (I + bias)          membrane before the reset
//   s = H(x - threshold)               H(0) = 0; NaN for a NaN or infinite x - threshold
//                                      (H + d * 0, as `surrogates.heaviside`: a NaN surfaces)
//   v = x - threshold * s | x * (1 - s) | x          reset "subtract" | "zero" | "none"
//
// Layout: currents [B, S, ...] (batch-major, S steps), states [B, ...]; the units of a
// step, M = prod(...), are contiguous, and the per-neuron parameters ([C], C the last
// dimension) repeat every C units (a convolution's channels).
//
// Forward: one pass over the currents, writing the spikes (into the currents' buffer when
// TensorFlow lets it go); nothing is stored for the gradient. Gradient: per batch element
// and tile of units, the tile's membranes x[t] are recomputed from the currents into a
// scratch buffer that stays in cache, then walked back from t = S-1 to 0, carrying dL/dv;
// dI overwrites the spike gradient's buffer when possible. Parameter gradients (beta,
// threshold, bias) are summed per batch element, then over the batch and the positions
// sharing a channel. Work is split over batch elements and tiles on the intra-op threads.
//
// The loops run on GCC/Clang vector types (simd.h) compiled for SSE2 and AVX2 in one
// portable library; AVX2 is used when the CPU has it (DENSE_SNNS_ISA=generic forces SSE2).
// The loops are bound by memory bandwidth, so wider vectors would not pay for their compile
// time. Built with -ffp-contract=off: no fused multiply-adds, so the arithmetic rounds as
// TensorFlow's separate ops do and the spikes equal those of the step function. What the
// kernels implement (models, resets, surrogates) is the table of kernel_table.h.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"
#include "kernel_table.h"
#include "simd.h"

namespace dense_snns_lif {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;
typedef int64_t i64;

enum Reset { kSubtract = 0, kZero = 1, kNone = 2 };
enum Surrogate { kSuperspike = 0, kRational = 1, kArctan = 2, kSigmoid = 3, kTriangle = 4, kBoxcar = 5 };

// Attribute values by the names of kernel_table.h.
static dsnn::Status ParseReset(const std::string& name, int* out) {
#define DSNN_PARSE_RESET(NAME, VALUE) \
  if (name == #NAME) {                \
    *out = VALUE;                     \
    return dsnn::OkStatus();          \
  }
  DSNN_KERNEL_RESETS(DSNN_PARSE_RESET)
#undef DSNN_PARSE_RESET
  return errors::InvalidArgument("unknown reset '", name, "' (see kernel_table.h)");
}

static dsnn::Status ParseSurrogate(const std::string& name, int* out) {
#define DSNN_PARSE_SURROGATE(NAME, VALUE) \
  if (name == #NAME) {                    \
    *out = VALUE;                         \
    return dsnn::OkStatus();              \
  }
  DSNN_KERNEL_SURROGATES(DSNN_PARSE_SURROGATE)
#undef DSNN_PARSE_SURROGATE
  return errors::InvalidArgument("unknown surrogate '", name, "' (see kernel_table.h)");
}

// ------------------------------------------------------------------------------------------
// vector helpers (simd.h): V is a GCC/Clang vector of VB bytes
// ------------------------------------------------------------------------------------------

using dense_snns_simd::Isa;
using dense_snns_simd::RunParts;
using dense_snns_simd::Vec;

// One lane-generic expression per formula, used by the vector and the scalar tail loops.
template <typename V>
DSNN_INLINE V Select(bool c, V a, V b) { return c ? a : b; }
template <typename V, typename M>
DSNN_INLINE V Select(M c, V a, V b) { return c ? a : b; }

template <typename V, typename S>
DSNN_INLINE V Abs(V x, S zero) { return Select(x < zero, -x, x); }

// ------------------------------------------------------------------------------------------
// forward
// ------------------------------------------------------------------------------------------

// One step of a row of n units: v (in/out) is the membrane after the previous reset.
// Writes the spikes to `out` and, if KEEP, the membrane before the reset to `keep`. `out`
// may be `in` (the spikes then overwrite the currents, element by element after reading).
template <typename T, int VB, int R, bool SPIKES, bool KEEP>
DSNN_INLINE void StepRow(const T* in, T* out, T* __restrict keep, T* __restrict v,
                         const T* __restrict beta, const T* __restrict th, const T* __restrict bias, i64 n) {
  typedef Vec<T, VB> W;
  typedef typename W::V V;
  const V zero = W::Splat(T(0)), one = W::Splat(T(1));
  i64 i = 0;
  for (; i + W::kLanes <= n; i += W::kLanes) {
    const V x = W::Load(beta + i) * W::Load(v + i) + (W::Load(in + i) + W::Load(bias + i));
    const V t = W::Load(th + i);
    const V d = x - t;
    const V s = Select(d > zero, one, zero) + d * zero;
    if (SPIKES) W::Store(out + i, s);
    if (KEEP) W::Store(keep + i, x);
    W::Store(v + i, R == kSubtract ? x - t * s : (R == kZero ? x * (one - s) : x));
  }
  for (; i < n; ++i) {
    const T x = beta[i] * v[i] + (in[i] + bias[i]);
    const T d = x - th[i];
    const T s = (d > T(0) ? T(1) : T(0)) + d * T(0);
    if (SPIKES) out[i] = s;
    if (KEEP) keep[i] = x;
    v[i] = R == kSubtract ? x - th[i] * s : (R == kZero ? x * (T(1) - s) : x);
  }
}

// Forward over S steps of one batch element's units [m0, m0 + n) (row stride M).
template <typename T, int VB, int R>
DSNN_INLINE void ForwardTile(const T* in, T* out, T* v, const T* beta, const T* th, const T* bias, i64 steps, i64 n,
                             i64 stride) {
  for (i64 t = 0; t < steps; ++t) {
    StepRow<T, VB, R, true, false>(in + t * stride, out + t * stride, nullptr, v, beta, th, bias, n);
  }
}

// The membranes before the reset, x[t] for t < S, into keep [S, n].
template <typename T, int VB, int R>
DSNN_INLINE void RecomputeTile(const T* in, T* keep, T* v, const T* beta, const T* th, const T* bias, i64 steps, i64 n,
                               i64 stride) {
  for (i64 t = 0; t < steps; ++t) {
    StepRow<T, VB, R, false, true>(in + t * stride, nullptr, keep + t * n, v, beta, th, bias, n);
  }
}

// ------------------------------------------------------------------------------------------
// gradient
// ------------------------------------------------------------------------------------------

// d spike / dx at d = x - threshold; `scale` is the surrogate's width parameter. The same
// closed forms as `dense_snns.surrogates`.
template <int G, typename V, typename S>
DSNN_INLINE V SurrogateOf(V d, V scale, S zero, S one) {
  if (G == kSuperspike) {
    const V a = scale * Abs(d, zero) + one;
    return one / (a * a);
  }
  if (G == kRational) return one / (scale * Abs(d, zero) + one);
  if (G == kArctan) {
    const V a = static_cast<S>(0.5 * M_PI) * scale * d;
    return one / (one + a * a);
  }
  if (G == kTriangle) {
    const V a = one - scale * Abs(d, zero);
    return Select(a > zero, a, zero + 0 * a);
  }
  // kBoxcar
  return Select(Abs(d, zero) < static_cast<S>(0.5) / scale, one + 0 * d, zero + 0 * d);
}

template <typename T>
DSNN_INLINE T SigmoidSurrogate(T d, T scale) {
  // 4 sig (1 - sig) without the cancellation of 1 - sig: 4 e / (1 + e)^2, e = exp(-scale |d|)
  const T e = std::exp(-scale * std::abs(d));
  return T(4) * e / ((T(1) + e) * (T(1) + e));
}

// The reverse-time walk of one tile. keep [S, n]: membranes before the reset; v0: the
// state entering step 0; gs (stride M): dL/ds; di (stride M): dL/dI (may alias gs);
// gv [n]: dL/dv after the last step in, dL/dv0 out; dbeta, dth, dbias [n]: accumulated.
template <typename T, int VB, int R, int G>
DSNN_INLINE void BackwardTile(bool stop, const T* __restrict keep, const T* __restrict v0, const T* gs, T* di, T* __restrict gv,
                              const T* __restrict beta, const T* __restrict th, T scale_value, T* __restrict dbeta,
                              T* __restrict dth, T* __restrict dbias, i64 steps, i64 n, i64 stride) {
  typedef Vec<T, VB> W;
  typedef typename W::V V;
  const V zero = W::Splat(T(0)), one = W::Splat(T(1)), scale = W::Splat(scale_value);
  for (i64 t = steps - 1; t >= 0; --t) {
    const T* x_row = keep + t * n;
    const T* prev_row = t > 0 ? keep + (t - 1) * n : nullptr;
    const T* g_row = gs + t * stride;
    T* d_row = di + t * stride;
    i64 i = 0;
    if (G != kSigmoid) {
      for (; i + W::kLanes <= n; i += W::kLanes) {
        const V x = W::Load(x_row + i), thr = W::Load(th + i), g = W::Load(gv + i), gsp = W::Load(g_row + i);
        const V d = x - thr;
        const V s = Select(d > zero, one, zero) + d * zero;
        const V sg = SurrogateOf<G>(d, scale, T(0), T(1));
        V dd, dx, dthr;
        if (R == kSubtract) {
          dd = (stop ? gsp : gsp - thr * g) * sg;
          dx = g + dd;
          dthr = W::Load(dth + i) - s * g - dd;
        } else if (R == kZero) {
          dd = (stop ? gsp : gsp - x * g) * sg;
          dx = g * (one - s) + dd;
          dthr = W::Load(dth + i) - dd;
        } else {
          dd = gsp * sg;
          dx = g + dd;
          dthr = W::Load(dth + i) - dd;
        }
        V vp;
        if (prev_row != nullptr) {
          const V xp = W::Load(prev_row + i);
          const V dp = xp - thr;
          const V sp = Select(dp > zero, one, zero) + dp * zero;
          vp = R == kSubtract ? xp - thr * sp : (R == kZero ? xp * (one - sp) : xp);
        } else {
          vp = W::Load(v0 + i);
        }
        W::Store(dth + i, dthr);
        W::Store(dbeta + i, W::Load(dbeta + i) + dx * vp);
        W::Store(dbias + i, W::Load(dbias + i) + dx);
        W::Store(d_row + i, dx);
        W::Store(gv + i, W::Load(beta + i) * dx);
      }
    }
    for (; i < n; ++i) {
      const T x = x_row[i], thr = th[i], g = gv[i], gsp = g_row[i];
      const T d = x - thr;
      const T s = (d > T(0) ? T(1) : T(0)) + d * T(0);
      const T sg = G == kSigmoid ? SigmoidSurrogate(d, scale_value) : SurrogateOf<G>(d, scale_value, T(0), T(1));
      T dd, dx;
      if (R == kSubtract) {
        dd = (stop ? gsp : gsp - thr * g) * sg;
        dx = g + dd;
        dth[i] -= s * g;
      } else if (R == kZero) {
        dd = (stop ? gsp : gsp - x * g) * sg;
        dx = g * (T(1) - s) + dd;
      } else {
        dd = gsp * sg;
        dx = g + dd;
      }
      dth[i] -= dd;
      T vp;
      if (prev_row != nullptr) {
        const T xp = prev_row[i];
        const T dp = xp - thr;
        const T sp = (dp > T(0) ? T(1) : T(0)) + dp * T(0);
        vp = R == kSubtract ? xp - thr * sp : (R == kZero ? xp * (T(1) - sp) : xp);
      } else {
        vp = v0[i];
      }
      dbeta[i] += dx * vp;
      dbias[i] += dx;
      d_row[i] = dx;
      gv[i] = beta[i] * dx;
    }
  }
}

// ------------------------------------------------------------------------------------------
// leaky integrator (non-spiking readout): v = beta * v + (I + bias), output v
// ------------------------------------------------------------------------------------------

template <typename T, int VB>
DSNN_INLINE void IntegrateRow(const T* in, T* out, T* __restrict v, const T* __restrict beta,
                              const T* __restrict bias, i64 n) {
  typedef Vec<T, VB> W;
  typedef typename W::V V;
  i64 i = 0;
  for (; i + W::kLanes <= n; i += W::kLanes) {
    const V x = W::Load(beta + i) * W::Load(v + i) + (W::Load(in + i) + W::Load(bias + i));
    W::Store(out + i, x);
    W::Store(v + i, x);
  }
  for (; i < n; ++i) {
    const T x = beta[i] * v[i] + (in[i] + bias[i]);
    out[i] = x;
    v[i] = x;
  }
}

// Reverse-time walk of one batch element: out [S, M] the forward outputs (the membranes),
// go [S, M] their gradient, di [S, M] dL/dI (may alias go), gv [M]: dL/dv after the last
// step in, dL/dv0 out; dbeta, dbias [M] accumulated.
template <typename T, int VB>
DSNN_INLINE void IntegratorBackward(const T* __restrict out, const T* __restrict v0, const T* go, T* di,
                                    T* __restrict gv, const T* __restrict beta, T* __restrict dbeta,
                                    T* __restrict dbias, i64 steps, i64 n) {
  typedef Vec<T, VB> W;
  typedef typename W::V V;
  for (i64 t = steps - 1; t >= 0; --t) {
    const T* prev = t > 0 ? out + (t - 1) * n : v0;
    const T* g_row = go + t * n;
    T* d_row = di + t * n;
    i64 i = 0;
    for (; i + W::kLanes <= n; i += W::kLanes) {
      const V dx = W::Load(gv + i) + W::Load(g_row + i);
      W::Store(dbeta + i, W::Load(dbeta + i) + dx * W::Load(prev + i));
      W::Store(dbias + i, W::Load(dbias + i) + dx);
      W::Store(d_row + i, dx);
      W::Store(gv + i, W::Load(beta + i) * dx);
    }
    for (; i < n; ++i) {
      const T dx = gv[i] + g_row[i];
      dbeta[i] += dx * prev[i];
      dbias[i] += dx;
      d_row[i] = dx;
      gv[i] = beta[i] * dx;
    }
  }
}

// ------------------------------------------------------------------------------------------
// dispatch over instruction sets and template parameters
// ------------------------------------------------------------------------------------------

struct Problem {
  i64 batch, steps, units;  // B, S, M
};

// Forward of work units [u0, u1): unit u is batch element u.
template <typename T, int VB>
DSNN_INLINE void ForwardUnits(int reset, const Problem& p, const T* in, const T* v0, const T* beta, const T* th,
                              const T* bias, T* out, T* v_final, i64 u0, i64 u1) {
  for (i64 b = u0; b < u1; ++b) {
    T* v = v_final + b * p.units;
    std::copy(v0 + b * p.units, v0 + (b + 1) * p.units, v);
    const i64 offset = b * p.steps * p.units;
    switch (reset) {
      case kSubtract: ForwardTile<T, VB, kSubtract>(in + offset, out + offset, v, beta, th, bias, p.steps, p.units, p.units); break;
      case kZero: ForwardTile<T, VB, kZero>(in + offset, out + offset, v, beta, th, bias, p.steps, p.units, p.units); break;
      default: ForwardTile<T, VB, kNone>(in + offset, out + offset, v, beta, th, bias, p.steps, p.units, p.units); break;
    }
  }
}

// What one gradient work unit (batch element b, units [m0, m0 + n)) reads and writes.
template <typename T>
struct GradArgs {
  const T* in;     // currents [B, S, M]
  const T* v0;     // [B, M]
  const T* beta;   // [M]
  const T* th;     // [M]
  const T* bias;   // [M]
  const T* gs;     // dL/dspikes [B, S, M]
  const T* gv;     // dL/dv_final [B, M]
  T* di;           // dL/dI [B, S, M] (may alias gs)
  T* dv0;          // [B, M]
  T* sums;         // [B, 3, M]: dbeta, dthreshold, dbias per batch element
  T scale;
};

template <typename T, int VB, int R, int G>
DSNN_INLINE void GradTile(bool stop, const GradArgs<T>& a, const Problem& p, i64 b, i64 m0, i64 n, T* keep) {
  const i64 M = p.units, S = p.steps;
  const i64 offset = b * S * M + m0;
  T* gv = a.dv0 + b * M + m0;  // carried dL/dv: ends as dL/dv0
  std::copy(a.v0 + b * M + m0, a.v0 + b * M + m0 + n, gv);
  RecomputeTile<T, VB, R>(a.in + offset, keep, gv, a.beta + m0, a.th + m0, a.bias + m0, S, n, M);
  std::copy(a.gv + b * M + m0, a.gv + b * M + m0 + n, gv);
  T* sums = a.sums + b * 3 * M;
  BackwardTile<T, VB, R, G>(stop, keep, a.v0 + b * M + m0, a.gs + offset, a.di + offset, gv, a.beta + m0, a.th + m0,
                                  a.scale, sums + m0, sums + M + m0, sums + 2 * M + m0, S, n, M);
}

template <typename T, int VB, int R>
DSNN_INLINE void GradTileSurrogate(int surrogate, bool stop, const GradArgs<T>& a, const Problem& p, i64 b, i64 m0,
                                   i64 n, T* keep) {
  switch (surrogate) {
    case kSuperspike: GradTile<T, VB, R, kSuperspike>(stop, a, p, b, m0, n, keep); break;
    case kRational: GradTile<T, VB, R, kRational>(stop, a, p, b, m0, n, keep); break;
    case kArctan: GradTile<T, VB, R, kArctan>(stop, a, p, b, m0, n, keep); break;
    case kSigmoid: GradTile<T, VB, R, kSigmoid>(stop, a, p, b, m0, n, keep); break;
    case kTriangle: GradTile<T, VB, R, kTriangle>(stop, a, p, b, m0, n, keep); break;
    default: GradTile<T, VB, R, kBoxcar>(stop, a, p, b, m0, n, keep); break;
  }
}

// Gradient of work units [u0, u1): unit u is (batch element u / tiles, tile u % tiles).
template <typename T, int VB>
DSNN_INLINE void GradUnits(int reset, int surrogate, bool stop, const GradArgs<T>& a, const Problem& p, i64 tile,
                           i64 u0, i64 u1) {
  const i64 tiles = (p.units + tile - 1) / tile;
  std::vector<T> keep(static_cast<size_t>(p.steps * tile));
  for (i64 u = u0; u < u1; ++u) {
    const i64 b = u / tiles, m0 = (u % tiles) * tile, n = std::min(tile, p.units - m0);
    switch (reset) {
      case kSubtract: GradTileSurrogate<T, VB, kSubtract>(surrogate, stop, a, p, b, m0, n, keep.data()); break;
      case kZero: GradTileSurrogate<T, VB, kZero>(surrogate, stop, a, p, b, m0, n, keep.data()); break;
      default: GradTileSurrogate<T, VB, kNone>(surrogate, stop, a, p, b, m0, n, keep.data()); break;
    }
  }
}

// Leaky integrator forward and gradient of batch elements [u0, u1).
template <typename T, int VB>
DSNN_INLINE void IntegratorForwardUnits(const Problem& p, const T* in, const T* v0, const T* beta, const T* bias,
                                        T* out, T* v_final, i64 u0, i64 u1) {
  const i64 M = p.units;
  for (i64 b = u0; b < u1; ++b) {
    T* v = v_final + b * M;
    std::copy(v0 + b * M, v0 + (b + 1) * M, v);
    for (i64 t = 0; t < p.steps; ++t) {
      const i64 offset = (b * p.steps + t) * M;
      IntegrateRow<T, VB>(in + offset, out + offset, v, beta, bias, M);
    }
  }
}

template <typename T, int VB>
DSNN_INLINE void IntegratorGradUnits(const Problem& p, const T* out, const T* v0, const T* beta, const T* go,
                                     const T* gv_final, T* di, T* dv0, T* sums, i64 u0, i64 u1) {
  const i64 M = p.units, S = p.steps;
  for (i64 b = u0; b < u1; ++b) {
    T* gv = dv0 + b * M;
    std::copy(gv_final + b * M, gv_final + (b + 1) * M, gv);
    T* row_sums = sums + b * 2 * M;
    IntegratorBackward<T, VB>(out + b * S * M, v0 + b * M, go + b * S * M, di + b * S * M, gv, beta, row_sums,
                              row_sums + M, S, M);
  }
}

#define DSNN_LIF_ENTRIES(SUFFIX, ATTRIBUTES, VB)                                                   \
  template <typename T>                                                                            \
  ATTRIBUTES void Forward##SUFFIX(int reset, const Problem& p, const T* in, const T* v0,            \
                                  const T* beta, const T* th, const T* bias, T* out, T* v_final,   \
                                  i64 u0, i64 u1) {                                                \
    ForwardUnits<T, VB>(reset, p, in, v0, beta, th, bias, out, v_final, u0, u1);                   \
  }                                                                                                \
  template <typename T>                                                                            \
  ATTRIBUTES void Grad##SUFFIX(int reset, int surrogate, bool stop, const GradArgs<T>& a,           \
                               const Problem& p, i64 tile, i64 u0, i64 u1) {                       \
    GradUnits<T, VB>(reset, surrogate, stop, a, p, tile, u0, u1);                                  \
  }                                                                                                \
  template <typename T>                                                                            \
  ATTRIBUTES void IntegratorForward##SUFFIX(const Problem& p, const T* in, const T* v0,             \
                                            const T* beta, const T* bias, T* out, T* v_final,      \
                                            i64 u0, i64 u1) {                                      \
    IntegratorForwardUnits<T, VB>(p, in, v0, beta, bias, out, v_final, u0, u1);                    \
  }                                                                                                \
  template <typename T>                                                                            \
  ATTRIBUTES void IntegratorGrad##SUFFIX(const Problem& p, const T* out, const T* v0,               \
                                         const T* beta, const T* go, const T* gv_final, T* di,     \
                                         T* dv0, T* sums, i64 u0, i64 u1) {                        \
    IntegratorGradUnits<T, VB>(p, out, v0, beta, go, gv_final, di, dv0, sums, u0, u1);             \
  }

DSNN_LIF_ENTRIES(Generic, static, 16)

#ifdef DSNN_X86_DISPATCH
// No FMA in these entry points: the membrane must round as TensorFlow's separate ops do.
DSNN_LIF_ENTRIES(Avx2, static __attribute__((target("avx2"))), 32)
#endif

// The instruction set of these kernels on this CPU (generic or AVX2: the loops are bound by
// memory bandwidth, so wider vectors would not pay for their compile time).
static Isa CurrentIsa() {
  static const Isa isa = dense_snns_simd::DetectIsa(Isa::kAvx2);
  return isa;
}

#ifdef DSNN_X86_DISPATCH
#define DSNN_LIF_DISPATCH(NAME, ...)                        \
  switch (CurrentIsa()) {                                   \
    case Isa::kAvx2: NAME##Avx2<T>(__VA_ARGS__); break;     \
    default: NAME##Generic<T>(__VA_ARGS__); break;          \
  }
#else
#define DSNN_LIF_DISPATCH(NAME, ...) NAME##Generic<T>(__VA_ARGS__);
#endif

// ------------------------------------------------------------------------------------------
// ops
// ------------------------------------------------------------------------------------------

// A per-channel parameter input: its index, its name in messages, whether [0] (absent) is allowed.
struct ParamInput {
  int index;
  const char* name;
  bool optional;
};

// Checks the shapes of the sequence (input 0) and the initial state (input 1) and returns
// the problem size; checks the [C] parameters and expands each to an [M] row.
template <typename T>
static dsnn::Status Prepare(OpKernelContext* ctx, std::initializer_list<ParamInput> params, Problem* p,
                            std::vector<std::vector<T>>* rows) {
  const Tensor& currents = ctx->input(0);
  const Tensor& v0 = ctx->input(1);
  if (currents.dims() < 3) {
    return errors::InvalidArgument("`currents` must have rank >= 3 [batch, time, ..., units], got shape ",
                                   currents.shape().DebugString());
  }
  TensorShape state_shape = currents.shape();
  state_shape.RemoveDim(1);
  if (v0.shape() != state_shape) {
    return errors::InvalidArgument("`initial_v` must have shape ", state_shape.DebugString(),
                                   " (`currents` without its time axis), got ", v0.shape().DebugString());
  }
  const i64 channels = currents.dim_size(currents.dims() - 1);
  p->batch = currents.dim_size(0);
  p->steps = currents.dim_size(1);
  p->units = p->batch == 0 ? 0 : v0.NumElements() / p->batch;
  rows->clear();
  for (const ParamInput& spec : params) {
    const Tensor& param = ctx->input(spec.index);
    const bool absent = spec.optional && param.dims() == 1 && param.NumElements() == 0;
    if (param.dims() != 1 || (param.dim_size(0) != channels && !absent)) {
      return errors::InvalidArgument("`", spec.name, "` must have shape [", channels, "] (the last dimension of ",
                                     "`currents`)", spec.optional ? " or [0]" : "", ", got ",
                                     param.shape().DebugString());
    }
    const T* values = param.flat<T>().data();
    rows->emplace_back(static_cast<size_t>(p->units));
    std::vector<T>& row = rows->back();
    for (i64 m = 0; m < p->units; ++m) row[m] = absent ? T(0) : values[m % channels];
  }
  return dsnn::OkStatus();
}

// Checks that gradient input `index` has the shape of input `like`.
static dsnn::Status CheckSameShape(OpKernelContext* ctx, int index, const char* name, int like, const char* like_name) {
  if (ctx->input(index).shape() == ctx->input(like).shape()) return dsnn::OkStatus();
  return errors::InvalidArgument("`", name, "` must have the shape of `", like_name, "` ",
                                 ctx->input(like).shape().DebugString(), ", got ",
                                 ctx->input(index).shape().DebugString());
}

// Outputs first_output, ... : the parameter gradients, each the sum over the batch and over
// the positions of each channel of `count` rows sums [B, count, M], shaped like `shapes`.
template <typename T>
static dsnn::Status ReduceParamGrads(OpKernelContext* ctx, const std::vector<T>& sums, const Problem& p, int count,
                                     int first_output, std::initializer_list<TensorShape> shapes) {
  int k = 0;
  for (const TensorShape& shape : shapes) {
    Tensor* out = nullptr;
    TF_RETURN_IF_ERROR(ctx->allocate_output(first_output + k, shape, &out));
    T* o = out->flat<T>().data();
    const i64 channels = out->NumElements();
    std::fill(o, o + channels, T(0));
    if (channels > 0) {
      for (i64 b = 0; b < p.batch; ++b) {
        const T* row = sums.data() + (b * count + k) * p.units;
        for (i64 m = 0; m < p.units; ++m) o[m % channels] += row[m];
      }
    }
    ++k;
  }
  return dsnn::OkStatus();
}

template <typename T>
class LifForwardOp : public OpKernel {
 public:
  explicit LifForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string reset;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reset", &reset));
    OP_REQUIRES_OK(ctx, ParseReset(reset, &reset_));
  }

  void Compute(OpKernelContext* ctx) override {
    Problem p;
    std::vector<std::vector<T>> rows;
    OP_REQUIRES_OK(ctx, Prepare<T>(ctx, {{2, "beta", false}, {3, "threshold", false}, {4, "bias", true}}, &p, &rows));
    const std::vector<T>& beta = rows[0];
    const std::vector<T>& th = rows[1];
    const std::vector<T>& bias = rows[2];
    Tensor* spikes = nullptr;
    Tensor* v_final = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, ctx->input(0).shape(), &spikes));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &v_final));
    if (p.batch == 0 || p.units == 0) return;
    const T* in = ctx->input(0).flat<T>().data();
    const T* v0 = ctx->input(1).flat<T>().data();
    T* out = spikes->flat<T>().data();
    T* vf = v_final->flat<T>().data();
    const int reset = reset_;
    RunParts(ctx, p.batch, p.steps * p.units * 4, [&](i64 u0, i64 u1) {
      DSNN_LIF_DISPATCH(Forward, reset, p, in, v0, beta.data(), th.data(), bias.data(), out, vf, u0, u1);
    });
  }

 private:
  int reset_ = kSubtract;
};

// Units per gradient tile: the tile's S membranes (the scratch of one thread) take about
// 2 MiB, which measured fastest at W2's shapes (S = 500: tiles of 1024 units, whole 4 KiB
// pages per row) against 0.5 and 1 MiB. Very long sequences get narrow tiles (at least 64
// units) rather than a scratch that grows with S.
static i64 GradTileUnits(i64 units, i64 steps, i64 bytes) {
  i64 tile = (i64(1) << 21) / std::max<i64>(1, steps * bytes);
  tile = std::max<i64>(64, (tile + 15) / 16 * 16);
  return std::max<i64>(1, std::min(units, tile));
}

template <typename T>
class LifGradOp : public OpKernel {
 public:
  explicit LifGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string reset, surrogate;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reset", &reset));
    OP_REQUIRES_OK(ctx, ParseReset(reset, &reset_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("surrogate", &surrogate));
    OP_REQUIRES_OK(ctx, ParseSurrogate(surrogate, &surrogate_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("stop_reset_grad", &stop_));
  }

  void Compute(OpKernelContext* ctx) override {
    Problem p;
    std::vector<std::vector<T>> rows;
    OP_REQUIRES_OK(ctx, Prepare<T>(ctx, {{2, "beta", false}, {3, "threshold", false}, {4, "bias", true}}, &p, &rows));
    const std::vector<T>& beta = rows[0];
    const std::vector<T>& th = rows[1];
    const std::vector<T>& bias = rows[2];
    OP_REQUIRES_OK(ctx, CheckSameShape(ctx, 5, "d_spikes", 0, "currents"));
    OP_REQUIRES_OK(ctx, CheckSameShape(ctx, 6, "d_final_v", 1, "initial_v"));
    const Tensor& scale = ctx->input(7);
    OP_REQUIRES(ctx, scale.dims() == 0,
                errors::InvalidArgument("`scale` must be a scalar, got shape ", scale.shape().DebugString()));
    const T scale_value = scale.scalar<T>()();
    OP_REQUIRES(ctx, scale_value > T(0), errors::InvalidArgument("`scale` must be > 0, got ", scale_value));
    const Tensor& d_spikes = ctx->input(5);
    const Tensor& d_final = ctx->input(6);
    Tensor* d_currents = nullptr;
    Tensor* d_v0 = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({5}, 0, ctx->input(0).shape(), &d_currents));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &d_v0));
    std::vector<T> sums(static_cast<size_t>(3 * p.batch * p.units), T(0));
    GradArgs<T> a;
    a.in = ctx->input(0).flat<T>().data();
    a.v0 = ctx->input(1).flat<T>().data();
    a.beta = beta.data();
    a.th = th.data();
    a.bias = bias.data();
    a.gs = d_spikes.flat<T>().data();
    a.gv = d_final.flat<T>().data();
    a.di = d_currents->flat<T>().data();
    a.dv0 = d_v0->flat<T>().data();
    a.sums = sums.data();
    a.scale = scale_value;
    if (p.batch > 0 && p.units > 0) {
      const i64 tile = GradTileUnits(p.units, p.steps, sizeof(T));
      const i64 units = p.batch * ((p.units + tile - 1) / tile);
      const int reset = reset_, surrogate = surrogate_;
      const bool stop = stop_;
      RunParts(ctx, units, p.steps * tile * 20, [&](i64 u0, i64 u1) {
        DSNN_LIF_DISPATCH(Grad, reset, surrogate, stop, a, p, tile, u0, u1);
      });
    }
    OP_REQUIRES_OK(ctx, ReduceParamGrads<T>(ctx, sums, p, 3, 2,
                                            {ctx->input(2).shape(), ctx->input(3).shape(), ctx->input(4).shape()}));
  }

 private:
  int reset_ = kSubtract, surrogate_ = kSuperspike;
  bool stop_ = true;
};


template <typename T>
class LeakyForwardOp : public OpKernel {
 public:
  explicit LeakyForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Problem p;
    std::vector<std::vector<T>> rows;
    OP_REQUIRES_OK(ctx, Prepare<T>(ctx, {{2, "beta", false}, {3, "bias", true}}, &p, &rows));
    Tensor* outputs = nullptr;
    Tensor* v_final = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, ctx->input(0).shape(), &outputs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &v_final));
    if (p.batch == 0 || p.units == 0) return;
    const T* in = ctx->input(0).flat<T>().data();
    const T* v0 = ctx->input(1).flat<T>().data();
    const T* beta = rows[0].data();
    const T* bias = rows[1].data();
    T* out = outputs->flat<T>().data();
    T* vf = v_final->flat<T>().data();
    RunParts(ctx, p.batch, p.steps * p.units * 3, [&](i64 u0, i64 u1) {
      DSNN_LIF_DISPATCH(IntegratorForward, p, in, v0, beta, bias, out, vf, u0, u1);
    });
  }
};

template <typename T>
class LeakyGradOp : public OpKernel {
 public:
  explicit LeakyGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Problem p;
    std::vector<std::vector<T>> rows;
    OP_REQUIRES_OK(ctx, Prepare<T>(ctx, {{2, "beta", false}}, &p, &rows));
    OP_REQUIRES_OK(ctx, CheckSameShape(ctx, 3, "d_outputs", 0, "outputs"));
    OP_REQUIRES_OK(ctx, CheckSameShape(ctx, 4, "d_final_v", 1, "initial_v"));
    Tensor* d_currents = nullptr;
    Tensor* d_v0 = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({3}, 0, ctx->input(0).shape(), &d_currents));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &d_v0));
    std::vector<T> sums(static_cast<size_t>(2 * p.batch * p.units), T(0));
    if (p.batch > 0 && p.units > 0) {
      const T* out = ctx->input(0).flat<T>().data();
      const T* v0 = ctx->input(1).flat<T>().data();
      const T* beta = rows[0].data();
      const T* go = ctx->input(3).flat<T>().data();
      const T* gv = ctx->input(4).flat<T>().data();
      T* di = d_currents->flat<T>().data();
      T* dv0 = d_v0->flat<T>().data();
      T* acc = sums.data();
      RunParts(ctx, p.batch, p.steps * p.units * 6, [&](i64 u0, i64 u1) {
        DSNN_LIF_DISPATCH(IntegratorGrad, p, out, v0, beta, go, gv, di, dv0, acc, u0, u1);
      });
    }
    const TensorShape channels({ctx->input(0).dim_size(ctx->input(0).dims() - 1)});
    OP_REQUIRES_OK(ctx, ReduceParamGrads<T>(ctx, sums, p, 2, 2, {ctx->input(2).shape(), channels}));
  }
};

}  // namespace dense_snns_lif

namespace {

using ::tensorflow::shape_inference::InferenceContext;

dsnn::Status SameAsInputs(InferenceContext* c) {
  for (int i = 0; i < c->num_outputs(); ++i) c->set_output(i, c->input(i));
  return dsnn::OkStatus();
}

}  // namespace

REGISTER_OP("DenseSnnsLifForward")
    .Input("currents: T")
    .Input("initial_v: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Output("spikes: T")
    .Output("final_v: T")
    .Attr("T: {float, double}")
    .Attr("reset: string")
    .SetShapeFn(SameAsInputs)
    .Doc("LIF recurrence over a batch-major sequence: spikes [B, S, ...] and the final membrane [B, ...].");

REGISTER_OP("DenseSnnsLifGrad")
    .Input("currents: T")
    .Input("initial_v: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Input("d_spikes: T")
    .Input("d_final_v: T")
    .Input("scale: T")
    .Output("d_currents: T")
    .Output("d_initial_v: T")
    .Output("d_beta: T")
    .Output("d_threshold: T")
    .Output("d_bias: T")
    .Attr("T: {float, double}")
    .Attr("reset: string")
    .Attr("stop_reset_grad: bool")
    .Attr("surrogate: string")
    .SetShapeFn(SameAsInputs)
    .Doc("Reverse-time gradient of DenseSnnsLifForward with a surrogate spike derivative.");

REGISTER_OP("DenseSnnsLeakyForward")
    .Input("currents: T")
    .Input("initial_v: T")
    .Input("beta: T")
    .Input("bias: T")
    .Output("outputs: T")
    .Output("final_v: T")
    .Attr("T: {float, double}")
    .SetShapeFn(SameAsInputs)
    .Doc("Leaky integrator over a batch-major sequence: membranes [B, S, ...] and the final one [B, ...].");

REGISTER_OP("DenseSnnsLeakyGrad")
    .Input("outputs: T")
    .Input("initial_v: T")
    .Input("beta: T")
    .Input("d_outputs: T")
    .Input("d_final_v: T")
    .Output("d_currents: T")
    .Output("d_initial_v: T")
    .Output("d_beta: T")
    .Output("d_bias: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(2));
      c->set_output(3, c->input(2));
      return dsnn::OkStatus();
    })
    .Doc("Reverse-time gradient of DenseSnnsLeakyForward, from its outputs; d_bias is per channel.");

// Each op has a float and a double kernel.
#define DSNN_LIF_REGISTER(NAME, OP)                                                                              \
  REGISTER_KERNEL_BUILDER(Name(NAME).Device(::tensorflow::DEVICE_CPU).TypeConstraint<float>("T"), OP<float>);   \
  REGISTER_KERNEL_BUILDER(Name(NAME).Device(::tensorflow::DEVICE_CPU).TypeConstraint<double>("T"), OP<double>);

DSNN_LIF_REGISTER("DenseSnnsLifForward", dense_snns_lif::LifForwardOp)
DSNN_LIF_REGISTER("DenseSnnsLifGrad", dense_snns_lif::LifGradOp)
DSNN_LIF_REGISTER("DenseSnnsLeakyForward", dense_snns_lif::LeakyForwardOp)
DSNN_LIF_REGISTER("DenseSnnsLeakyGrad", dense_snns_lif::LeakyGradOp)
