// The LIF and CuBa-LIF recurrences of a whole sequence as CPU kernels: the forward pass and
// its reverse-time gradient (BPTT with a surrogate spike derivative), and a forward pass that
// selects each step's spikes into a fixed number of slots (the sparse blocks). Also the
// leaky integrator of the readouts (`neurons.leaky_integrator_step`: v = beta * v + (I +
// bias), output v), whose gradient reads the outputs it produced (they are the membranes)
// instead of recomputing them.
//
// These kernels compute exactly what `dense_snns.neurons.lif_step` / `cuba_lif_step`
// compute (with the bias added to the current first, as `fused.BlockStep` does); tests
// compare them with the compiled loops of `dense_snns.fused` built on those functions. Per
// step and unit:
//
//   i = alpha * i + (I + bias)         CuBa-LIF: the synaptic current
//   x = beta * v + i                   membrane before the reset (LIF: beta * v + (I + bias))
//   s = H(x - threshold)               H(0) = 0; NaN for a NaN or infinite x - threshold
//                                      (H + d * 0, as `surrogates.heaviside`: a NaN surfaces)
//   v = x - threshold * s | x * (1 - s) | x          reset "subtract" | "zero" | "none"
//
// Layout: currents [B, S, ...] (batch-major, S steps), states [B, ...]; the units of a
// step, M = prod(...), are contiguous, and the per-neuron parameters ([C], C the last
// dimension) repeat every C units (a convolution's channels).
//
// Forward: one pass over the currents, writing the spikes (into the currents' buffer when
// TensorFlow lets it go); nothing is stored for the gradient. The selecting forward writes
// each step's x - threshold to a row in cache and selects from it as
// `sparse_snns.select_spikes` does (spikes_common.h: SelectRow). Gradient: per batch element
// and tile of units, the tile's membranes x[t] (and CuBa-LIF's currents i[t]) are recomputed
// from the currents into a scratch buffer that stays in cache, then walked back from t = S-1
// to 0, carrying dL/dv (and dL/di);
// dI overwrites the spike gradient's buffer when possible. The selecting forward's gradient
// (the *SelectGrad ops) takes the gradient of the selected values as slots (ids, count,
// values) and fills each row of dL/ds into dI's row just before the walk reads it, in cache:
// no dense [B, S, M] spike gradient is written and read back. Parameter gradients ((alpha,)
// beta, threshold, bias) are summed per batch element, then over the batch and the positions
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
#include "spikes_common.h"

namespace dense_snns_lif {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
namespace errors = ::tensorflow::errors;
typedef int64_t i64;
typedef int32_t i32;

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

// What a step writes per unit to `out`: the spike, the membrane before the reset (and for
// CuBa-LIF the synaptic current to `keep_i`, for the gradient's recompute), or the membrane
// minus the threshold (for the spike selection).
enum Out { kSpikes = 0, kKeep = 1, kDiff = 2 };

// One step of a row of n units. v (in/out) is the membrane after the previous reset; with
// CUBA (CuBa-LIF), syn (in/out) is the synaptic current, syn = alpha * syn + (I + bias) and
// x = beta * v + syn; without it x = beta * v + (I + bias). `out` may be `in` (the spikes
// then overwrite the currents, element by element after reading).
template <typename T, int VB, int R, bool CUBA, int OUT>
DSNN_INLINE void StepRow(const T* in, T* out, T* __restrict keep_i, T* __restrict syn, T* __restrict v,
                         const T* __restrict alpha, const T* __restrict beta, const T* __restrict th,
                         const T* __restrict bias, i64 n) {
  typedef Vec<T, VB> W;
  typedef typename W::V V;
  const V zero = W::Splat(T(0)), one = W::Splat(T(1));
  i64 i = 0;
  for (; i + W::kLanes <= n; i += W::kLanes) {
    V cur = W::Load(in + i) + W::Load(bias + i);
    if (CUBA) {
      cur = W::Load(alpha + i) * W::Load(syn + i) + cur;
      W::Store(syn + i, cur);
      if (OUT == kKeep) W::Store(keep_i + i, cur);
    }
    const V x = W::Load(beta + i) * W::Load(v + i) + cur;
    const V t = W::Load(th + i);
    const V d = x - t;
    const V s = Select(d > zero, one, zero) + d * zero;
    if (OUT == kSpikes) W::Store(out + i, s);
    if (OUT == kKeep) W::Store(out + i, x);
    if (OUT == kDiff) W::Store(out + i, d);
    W::Store(v + i, R == kSubtract ? x - t * s : (R == kZero ? x * (one - s) : x));
  }
  for (; i < n; ++i) {
    T cur = in[i] + bias[i];
    if (CUBA) {
      cur = alpha[i] * syn[i] + cur;
      syn[i] = cur;
      if (OUT == kKeep) keep_i[i] = cur;
    }
    const T x = beta[i] * v[i] + cur;
    const T d = x - th[i];
    const T s = (d > T(0) ? T(1) : T(0)) + d * T(0);
    if (OUT == kSpikes) out[i] = s;
    if (OUT == kKeep) out[i] = x;
    if (OUT == kDiff) out[i] = d;
    v[i] = R == kSubtract ? x - th[i] * s : (R == kZero ? x * (T(1) - s) : x);
  }
}

// The per-unit parameters of a row and its states (syn is unused without CUBA).
template <typename T>
struct Row {
  const T* alpha;
  const T* beta;
  const T* th;
  const T* bias;
  T* syn;
  T* v;
};

// S steps of one row of n units (row stride `stride`), each written to out (stride
// `out_stride`) as OUT says; keep_i [S, n] for kKeep with CUBA.
template <typename T, int VB, int R, bool CUBA, int OUT>
DSNN_INLINE void StepsOfRow(const T* in, T* out, T* keep_i, const Row<T>& r, i64 steps, i64 n, i64 stride,
                            i64 out_stride) {
  for (i64 t = 0; t < steps; ++t) {
    StepRow<T, VB, R, CUBA, OUT>(in + t * stride, out + t * out_stride, CUBA && OUT == kKeep ? keep_i + t * n : nullptr,
                                 r.syn, r.v, r.alpha, r.beta, r.th, r.bias, n);
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

// What the reverse-time walk of one tile of n units reads, carries and accumulates.
template <typename T>
struct TileGrad {
  const T* keep;    // [S, n] membranes before the reset
  const T* keep_i;  // [S, n] synaptic currents (CuBa-LIF)
  const T* v0;      // [n] membrane entering step 0
  const T* i0;      // [n] synaptic current entering step 0 (CuBa-LIF)
  const T* gs;      // dL/ds, rows of stride `stride`
  T* di;            // dL/dI, rows of stride `stride` (may alias gs)
  T* gv;            // [n] dL/dv after the last step in, dL/dv0 out
  T* gi;            // [n] dL/dsyn after the last step in, dL/dsyn0 out (CuBa-LIF)
  const T* alpha;   // [n] parameters
  const T* beta;
  const T* th;
  T* dalpha;        // [n] accumulated parameter gradients
  T* dbeta;
  T* dth;
  T* dbias;
  // With ids (the selecting ops' gradient): dL/ds given as slots, fill[t] = values at ids[t]
  // for k < count[t] ([S, K] and [S] of this batch element), each row of `di` (then == gs)
  // filled from them just before the walk reads it; ids are absolute, the tile starts at m0.
  const i32* ids;
  const i32* count;
  const T* fill;
  i64 slots;
  i64 m0;
};

// row[0:n] = the slots of units [m0, m0 + n) (ids and values of `count` slots), 0 elsewhere.
template <typename T>
DSNN_INLINE void FillFromSlots(T* row, i64 n, i64 m0, const i32* ids, const T* values, i64 count) {
  std::fill(row, row + n, T(0));
  for (i64 k = 0; k < count; ++k) {
    const i64 i = ids[k] - m0;
    if (i >= 0 && i < n) row[i] = values[k];
  }
}

// The reverse-time walk of one tile (see TileGrad), carrying dL/dv (and dL/dsyn).
template <typename T, int VB, int R, int G, bool CUBA>
DSNN_INLINE void BackwardTile(bool stop, const TileGrad<T>& a, T scale_value, i64 steps, i64 n, i64 stride) {
  typedef Vec<T, VB> W;
  typedef typename W::V V;
  const V zero = W::Splat(T(0)), one = W::Splat(T(1)), scale = W::Splat(scale_value);
  const T* __restrict th = a.th;
  const T* __restrict beta = a.beta;
  const T* __restrict alpha = a.alpha;
  T* __restrict gv = a.gv;
  T* __restrict gi = a.gi;
  T* __restrict dth = a.dth;
  T* __restrict dbeta = a.dbeta;
  T* __restrict dbias = a.dbias;
  T* __restrict dalpha = a.dalpha;
  for (i64 t = steps - 1; t >= 0; --t) {
    const T* x_row = a.keep + t * n;
    const T* prev_row = t > 0 ? a.keep + (t - 1) * n : nullptr;
    const T* i_prev = CUBA ? (t > 0 ? a.keep_i + (t - 1) * n : a.i0) : nullptr;
    const T* g_row = a.gs + t * stride;
    T* d_row = a.di + t * stride;
    if (a.ids != nullptr) FillFromSlots(d_row, n, a.m0, a.ids + t * a.slots, a.fill + t * a.slots, a.count[t]);
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
          vp = W::Load(a.v0 + i);
        }
        V dcur = dx;  // dL/dsyn for CuBa-LIF: from x and from the next step's current
        if (CUBA) {
          dcur = dx + W::Load(gi + i);
          W::Store(dalpha + i, W::Load(dalpha + i) + dcur * W::Load(i_prev + i));
          W::Store(gi + i, W::Load(alpha + i) * dcur);
        }
        W::Store(dth + i, dthr);
        W::Store(dbeta + i, W::Load(dbeta + i) + dx * vp);
        W::Store(dbias + i, W::Load(dbias + i) + dcur);
        W::Store(d_row + i, dcur);
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
        vp = a.v0[i];
      }
      T dcur = dx;
      if (CUBA) {
        dcur = dx + gi[i];
        dalpha[i] += dcur * i_prev[i];
        gi[i] = alpha[i] * dcur;
      }
      dbeta[i] += dx * vp;
      dbias[i] += dcur;
      d_row[i] = dcur;
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

// What the units of a LIF or CuBa-LIF recurrence read (the CuBa-LIF fields are null for LIF).
template <typename T>
struct Seq {
  const T* in;     // currents [B, S, M]
  const T* i0;     // [B, M] synaptic current entering step 0 (CuBa-LIF)
  const T* v0;     // [B, M] membrane entering step 0
  const T* alpha;  // [M] (CuBa-LIF)
  const T* beta;   // [M]
  const T* th;     // [M]
  const T* bias;   // [M]
};

// Row b's states, initialised from the sequence's initial states into i_final / v_final.
template <typename T, bool CUBA>
DSNN_INLINE Row<T> StartRow(const Problem& p, const Seq<T>& q, T* i_final, T* v_final, i64 b) {
  const i64 M = p.units;
  T* v = v_final + b * M;
  std::copy(q.v0 + b * M, q.v0 + (b + 1) * M, v);
  T* syn = nullptr;
  if (CUBA) {
    syn = i_final + b * M;
    std::copy(q.i0 + b * M, q.i0 + (b + 1) * M, syn);
  }
  return Row<T>{q.alpha, q.beta, q.th, q.bias, syn, v};
}

// Forward of work units [u0, u1) (unit u is batch element u): spikes [B, S, M] into out.
template <typename T, int VB, bool CUBA>
DSNN_INLINE void ForwardUnits(int reset, const Problem& p, const Seq<T>& q, T* out, T* i_final, T* v_final, i64 u0,
                              i64 u1) {
  const i64 M = p.units, S = p.steps;
  for (i64 b = u0; b < u1; ++b) {
    const Row<T> r = StartRow<T, CUBA>(p, q, i_final, v_final, b);
    const i64 offset = b * S * M;
    switch (reset) {
      case kSubtract: StepsOfRow<T, VB, kSubtract, CUBA, kSpikes>(q.in + offset, out + offset, nullptr, r, S, M, M, M); break;
      case kZero: StepsOfRow<T, VB, kZero, CUBA, kSpikes>(q.in + offset, out + offset, nullptr, r, S, M, M, M); break;
      default: StepsOfRow<T, VB, kNone, CUBA, kSpikes>(q.in + offset, out + offset, nullptr, r, S, M, M, M); break;
    }
  }
}

// The fused spike selection: what it writes per step (row = b * S + t) and how it selects.
template <typename T>
struct Selection {
  i64 k_eff;      // Ke = min(capacity, M) slots
  int second;     // 1: every other unit may take a free slot; 2: those with x - threshold > `threshold`
  T threshold;
  i32* ids;       // [B, S, Ke], 0 at unused slots
  T* values;      // [B, S, Ke]: H(x - threshold) at the selected units, 0 at unused slots
  i32* count;     // [B, S] filled slots
  i32* total;     // [B, S] spikes (and NaNs), also those that did not fit
};

// The steps of batch element b, each followed by the selection of its units: spikes (x >
// threshold, or a NaN membrane) in increasing index, then the others as `sel.second` says.
template <typename T, int VB, int R, bool CUBA>
DSNN_INLINE void SelectSteps(const Problem& p, const Seq<T>& q, const Row<T>& r, const Selection<T>& sel, i64 b,
                             T* diff, uint64_t* masks) {
  const i64 M = p.units, K = sel.k_eff;
  for (i64 t = 0; t < p.steps; ++t) {
    const i64 row = b * p.steps + t;
    StepRow<T, VB, R, CUBA, kDiff>(q.in + row * M, diff, nullptr, r.syn, r.v, r.alpha, r.beta, r.th, r.bias, M);
    i32* ids = sel.ids + row * K;
    T* values = sel.values + row * K;
    i64 found = 0;
    const i64 filled =
        spikes_common::SelectRow(diff, M, K, spikes_common::Rule::kPositive, sel.second, sel.threshold, masks, ids, &found);
    for (i64 k = 0; k < filled; ++k) {
      const T d = diff[ids[k]];
      values[k] = (d > T(0) ? T(1) : T(0)) + d * T(0);
    }
    std::fill(ids + filled, ids + K, i32(0));
    std::fill(values + filled, values + K, T(0));
    sel.count[row] = static_cast<i32>(filled);
    sel.total[row] = static_cast<i32>(found);
  }
}

template <typename T, int VB, bool CUBA>
DSNN_INLINE void SelectForwardUnits(int reset, const Problem& p, const Seq<T>& q, const Selection<T>& sel, T* i_final,
                                    T* v_final, i64 u0, i64 u1) {
  std::vector<T> diff(static_cast<size_t>(p.units));
  std::vector<uint64_t> masks(static_cast<size_t>((p.units + 63) / 64));
  for (i64 b = u0; b < u1; ++b) {
    const Row<T> r = StartRow<T, CUBA>(p, q, i_final, v_final, b);
    switch (reset) {
      case kSubtract: SelectSteps<T, VB, kSubtract, CUBA>(p, q, r, sel, b, diff.data(), masks.data()); break;
      case kZero: SelectSteps<T, VB, kZero, CUBA>(p, q, r, sel, b, diff.data(), masks.data()); break;
      default: SelectSteps<T, VB, kNone, CUBA>(p, q, r, sel, b, diff.data(), masks.data()); break;
    }
  }
}

// What the gradient work units (batch element b, units [m0, m0 + n)) read and write.
template <typename T>
struct GradArgs {
  Seq<T> q;
  const T* gs;  // dL/dspikes [B, S, M]
  const T* gv;  // dL/dv_final [B, M]
  const T* gi;  // dL/di_final [B, M] (CuBa-LIF)
  T* di;        // dL/dI [B, S, M] (may alias gs)
  T* dv0;       // [B, M]
  T* di0;       // [B, M] (CuBa-LIF)
  T* sums;      // [B, P, M] per batch element: (dalpha,) dbeta, dthreshold, dbias
  T scale;
  // dL/dspikes as slots instead of gs (then gs == di; see TileGrad): [B, S, K], [B, S].
  const i32* ids = nullptr;
  const i32* count = nullptr;
  const T* fill = nullptr;
  i64 slots = 0;
};

template <typename T, int VB, int R, int G, bool CUBA>
DSNN_INLINE void GradTile(bool stop, const GradArgs<T>& a, const Problem& p, i64 b, i64 m0, i64 n, T* keep,
                          T* keep_i) {
  const i64 M = p.units, S = p.steps;
  const i64 offset = b * S * M + m0, state = b * M + m0;
  // The carried dL/dv (and dL/dsyn) end as dL/dv0 (dL/di0); first they hold the states of
  // the recompute.
  T* gv = a.dv0 + state;
  T* gi = CUBA ? a.di0 + state : nullptr;
  std::copy(a.q.v0 + state, a.q.v0 + state + n, gv);
  if (CUBA) std::copy(a.q.i0 + state, a.q.i0 + state + n, gi);
  const T* alpha = CUBA ? a.q.alpha + m0 : nullptr;
  const Row<T> r{alpha, a.q.beta + m0, a.q.th + m0, a.q.bias + m0, gi, gv};
  StepsOfRow<T, VB, R, CUBA, kKeep>(a.q.in + offset, keep, keep_i, r, S, n, M, n);
  std::copy(a.gv + state, a.gv + state + n, gv);
  if (CUBA) std::copy(a.gi + state, a.gi + state + n, gi);
  T* sums = a.sums + b * (CUBA ? 4 : 3) * M + m0;
  T* first = CUBA ? sums + M : sums;  // dbeta
  const bool slots = a.ids != nullptr;
  const TileGrad<T> g{keep,
                      keep_i,
                      a.q.v0 + state,
                      CUBA ? a.q.i0 + state : nullptr,
                      a.gs + offset,
                      a.di + offset,
                      gv,
                      gi,
                      alpha,
                      a.q.beta + m0,
                      a.q.th + m0,
                      CUBA ? sums : nullptr,
                      first,
                      first + M,
                      first + 2 * M,
                      slots ? a.ids + b * S * a.slots : nullptr,
                      slots ? a.count + b * S : nullptr,
                      slots ? a.fill + b * S * a.slots : nullptr,
                      a.slots,
                      m0};
  BackwardTile<T, VB, R, G, CUBA>(stop, g, a.scale, S, n, M);
}

template <typename T, int VB, int R, bool CUBA>
DSNN_INLINE void GradTileSurrogate(int surrogate, bool stop, const GradArgs<T>& a, const Problem& p, i64 b, i64 m0,
                                   i64 n, T* keep, T* keep_i) {
  switch (surrogate) {
    case kSuperspike: GradTile<T, VB, R, kSuperspike, CUBA>(stop, a, p, b, m0, n, keep, keep_i); break;
    case kRational: GradTile<T, VB, R, kRational, CUBA>(stop, a, p, b, m0, n, keep, keep_i); break;
    case kArctan: GradTile<T, VB, R, kArctan, CUBA>(stop, a, p, b, m0, n, keep, keep_i); break;
    case kSigmoid: GradTile<T, VB, R, kSigmoid, CUBA>(stop, a, p, b, m0, n, keep, keep_i); break;
    case kTriangle: GradTile<T, VB, R, kTriangle, CUBA>(stop, a, p, b, m0, n, keep, keep_i); break;
    default: GradTile<T, VB, R, kBoxcar, CUBA>(stop, a, p, b, m0, n, keep, keep_i); break;
  }
}

// Gradient of work units [u0, u1): unit u is (batch element u / tiles, tile u % tiles).
template <typename T, int VB, bool CUBA>
DSNN_INLINE void GradUnits(int reset, int surrogate, bool stop, const GradArgs<T>& a, const Problem& p, i64 tile,
                           i64 u0, i64 u1) {
  const i64 tiles = (p.units + tile - 1) / tile;
  std::vector<T> keep(static_cast<size_t>(p.steps * tile)), keep_i(CUBA ? static_cast<size_t>(p.steps * tile) : 0);
  for (i64 u = u0; u < u1; ++u) {
    const i64 b = u / tiles, m0 = (u % tiles) * tile, n = std::min(tile, p.units - m0);
    switch (reset) {
      case kSubtract: GradTileSurrogate<T, VB, kSubtract, CUBA>(surrogate, stop, a, p, b, m0, n, keep.data(), keep_i.data()); break;
      case kZero: GradTileSurrogate<T, VB, kZero, CUBA>(surrogate, stop, a, p, b, m0, n, keep.data(), keep_i.data()); break;
      default: GradTileSurrogate<T, VB, kNone, CUBA>(surrogate, stop, a, p, b, m0, n, keep.data(), keep_i.data()); break;
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
  ATTRIBUTES void Forward##SUFFIX(bool cuba, int reset, const Problem& p, const Seq<T>& q, T* out,  \
                                  T* i_final, T* v_final, i64 u0, i64 u1) {                        \
    if (cuba) {                                                                                    \
      ForwardUnits<T, VB, true>(reset, p, q, out, i_final, v_final, u0, u1);                       \
    } else {                                                                                       \
      ForwardUnits<T, VB, false>(reset, p, q, out, i_final, v_final, u0, u1);                      \
    }                                                                                              \
  }                                                                                                \
  template <typename T>                                                                            \
  ATTRIBUTES void SelectForward##SUFFIX(bool cuba, int reset, const Problem& p, const Seq<T>& q,    \
                                        const Selection<T>& sel, T* i_final, T* v_final, i64 u0,   \
                                        i64 u1) {                                                  \
    if (cuba) {                                                                                    \
      SelectForwardUnits<T, VB, true>(reset, p, q, sel, i_final, v_final, u0, u1);                 \
    } else {                                                                                       \
      SelectForwardUnits<T, VB, false>(reset, p, q, sel, i_final, v_final, u0, u1);                \
    }                                                                                              \
  }                                                                                                \
  template <typename T>                                                                            \
  ATTRIBUTES void Grad##SUFFIX(bool cuba, int reset, int surrogate, bool stop, const GradArgs<T>& a, \
                               const Problem& p, i64 tile, i64 u0, i64 u1) {                       \
    if (cuba) {                                                                                    \
      GradUnits<T, VB, true>(reset, surrogate, stop, a, p, tile, u0, u1);                          \
    } else {                                                                                       \
      GradUnits<T, VB, false>(reset, surrogate, stop, a, p, tile, u0, u1);                         \
    }                                                                                              \
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

// Checks the shapes of the sequence (input 0) and the initial states (inputs 1, ...,
// `states.size()`, named by `states`) and returns the problem size; checks the [C]
// parameters and expands each to an [M] row.
template <typename T>
static dsnn::Status Prepare(OpKernelContext* ctx, std::initializer_list<const char*> states,
                            std::initializer_list<ParamInput> params, Problem* p, std::vector<std::vector<T>>* rows) {
  const Tensor& currents = ctx->input(0);
  if (currents.dims() < 3) {
    return errors::InvalidArgument("`currents` must have rank >= 3 [batch, time, ..., units], got shape ",
                                   currents.shape().DebugString());
  }
  TensorShape state_shape = currents.shape();
  state_shape.RemoveDim(1);
  int index = 1;
  for (const char* name : states) {
    const Tensor& state = ctx->input(index++);
    if (state.shape() != state_shape) {
      return errors::InvalidArgument("`", name, "` must have shape ", state_shape.DebugString(),
                                     " (`currents` without its time axis), got ", state.shape().DebugString());
    }
  }
  const i64 channels = currents.dim_size(currents.dims() - 1);
  p->batch = currents.dim_size(0);
  p->steps = currents.dim_size(1);
  p->units = p->batch == 0 ? 0 : state_shape.num_elements() / p->batch;
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

// The inputs of a LIF (CUBA false) or CuBa-LIF (CUBA true) op: currents, the initial states
// (initial_v; or initial_i, initial_v), the parameters ((alpha,) beta, threshold, bias), then
// the op's own inputs from index kExtra.
template <bool CUBA>
struct Inputs {
  static constexpr int kStates = CUBA ? 2 : 1;
  static constexpr int kV0 = CUBA ? 2 : 1;
  static constexpr int kAlpha = 1 + kStates;  // CuBa-LIF only
  static constexpr int kBeta = CUBA ? kAlpha + 1 : 1 + kStates;
  static constexpr int kThreshold = kBeta + 1;
  static constexpr int kBias = kBeta + 2;
  static constexpr int kExtra = kBeta + 3;

  // Checks the inputs; fills the problem size, the [M] parameter rows and the sequence.
  template <typename T>
  static dsnn::Status Read(OpKernelContext* ctx, Problem* p, std::vector<std::vector<T>>* rows, Seq<T>* q) {
    if (CUBA) {
      TF_RETURN_IF_ERROR(Prepare<T>(ctx, {"initial_i", "initial_v"},
                                    {{kAlpha, "alpha", false}, {kBeta, "beta", false}, {kThreshold, "threshold", false},
                                     {kBias, "bias", true}},
                                    p, rows));
    } else {
      TF_RETURN_IF_ERROR(Prepare<T>(
          ctx, {"initial_v"}, {{kBeta, "beta", false}, {kThreshold, "threshold", false}, {kBias, "bias", true}}, p, rows));
    }
    const int first = CUBA ? 1 : 0;  // the row of beta
    q->in = ctx->input(0).flat<T>().data();
    q->i0 = CUBA ? ctx->input(1).flat<T>().data() : nullptr;
    q->v0 = ctx->input(kV0).flat<T>().data();
    q->alpha = CUBA ? (*rows)[0].data() : nullptr;
    q->beta = (*rows)[first].data();
    q->th = (*rows)[first + 1].data();
    q->bias = (*rows)[first + 2].data();
    return dsnn::OkStatus();
  }
};

// Allocates the final states (outputs first_output, ...: final_i for CuBa-LIF, final_v) and
// returns their buffers (final_i null for LIF).
template <typename T, bool CUBA>
static dsnn::Status FinalStates(OpKernelContext* ctx, int first_output, T** i_final, T** v_final) {
  Tensor* out = nullptr;
  *i_final = nullptr;
  if (CUBA) {
    TF_RETURN_IF_ERROR(ctx->allocate_output(first_output++, ctx->input(1).shape(), &out));
    *i_final = out->flat<T>().data();
  }
  TF_RETURN_IF_ERROR(ctx->allocate_output(first_output, ctx->input(Inputs<CUBA>::kV0).shape(), &out));
  *v_final = out->flat<T>().data();
  return dsnn::OkStatus();
}

template <typename T, bool CUBA>
class ForwardOp : public OpKernel {
 public:
  explicit ForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string reset;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reset", &reset));
    OP_REQUIRES_OK(ctx, ParseReset(reset, &reset_));
  }

  void Compute(OpKernelContext* ctx) override {
    Problem p;
    std::vector<std::vector<T>> rows;
    Seq<T> q;
    OP_REQUIRES_OK(ctx, Inputs<CUBA>::template Read<T>(ctx, &p, &rows, &q));
    Tensor* spikes = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, ctx->input(0).shape(), &spikes));
    T *i_final = nullptr, *v_final = nullptr;
    OP_REQUIRES_OK(ctx, (FinalStates<T, CUBA>(ctx, 1, &i_final, &v_final)));
    if (p.batch == 0 || p.units == 0) return;
    T* out = spikes->flat<T>().data();
    const int reset = reset_;
    RunParts(ctx, p.batch, p.steps * p.units * (CUBA ? 6 : 4), [&](i64 u0, i64 u1) {
      DSNN_LIF_DISPATCH(Forward, CUBA, reset, p, q, out, i_final, v_final, u0, u1);
    });
  }

 private:
  int reset_ = kSubtract;
};

// The forward pass with the spikes of each step selected into `capacity` slots while the
// step's membranes are in cache: no [B, S, M] output is written.
template <typename T, bool CUBA>
class SelectForwardOp : public OpKernel {
 public:
  explicit SelectForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string reset, second;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reset", &reset));
    OP_REQUIRES_OK(ctx, ParseReset(reset, &reset_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("capacity", &capacity_));
    OP_REQUIRES(ctx, capacity_ > 0, errors::InvalidArgument("`capacity` must be > 0, got ", capacity_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("second", &second));
    second_ = second == "above" ? 2 : 1;
  }

  void Compute(OpKernelContext* ctx) override {
    Problem p;
    std::vector<std::vector<T>> rows;
    Seq<T> q;
    OP_REQUIRES_OK(ctx, Inputs<CUBA>::template Read<T>(ctx, &p, &rows, &q));
    const Tensor& threshold = ctx->input(Inputs<CUBA>::kExtra);
    OP_REQUIRES(ctx, threshold.dims() == 0,
                errors::InvalidArgument("`second_threshold` must be a scalar, got shape ",
                                        threshold.shape().DebugString()));
    const Tensor& currents = ctx->input(0);
    OP_REQUIRES(ctx, currents.dims() == 3,
                errors::InvalidArgument("`currents` must have rank 3 [batch, time, units] for a selection, got shape ",
                                        currents.shape().DebugString()));
    Selection<T> sel;
    sel.k_eff = std::min<i64>(capacity_, p.units);
    sel.second = second_;
    sel.threshold = threshold.scalar<T>()();
    Tensor *ids = nullptr, *values = nullptr, *count = nullptr, *total = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({p.batch, p.steps, sel.k_eff}), &ids));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({p.batch, p.steps, sel.k_eff}), &values));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({p.batch, p.steps}), &count));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({p.batch, p.steps}), &total));
    T *i_final = nullptr, *v_final = nullptr;
    OP_REQUIRES_OK(ctx, (FinalStates<T, CUBA>(ctx, 4, &i_final, &v_final)));
    count->flat<i32>().setZero();  // the [B, S] outputs of a layer of no units
    total->flat<i32>().setZero();
    if (p.batch == 0 || p.units == 0) return;
    sel.ids = ids->flat<i32>().data();
    sel.values = values->flat<T>().data();
    sel.count = count->flat<i32>().data();
    sel.total = total->flat<i32>().data();
    const int reset = reset_;
    RunParts(ctx, p.batch, p.steps * p.units * (CUBA ? 7 : 5), [&](i64 u0, i64 u1) {
      DSNN_LIF_DISPATCH(SelectForward, CUBA, reset, p, q, sel, i_final, v_final, u0, u1);
    });
  }

 private:
  int reset_ = kSubtract;
  int capacity_ = 1;
  int second_ = 1;
};

// Units per gradient tile: the tile's S membranes (the scratch of one thread) take about
// 2 MiB, which measured fastest at W2's shapes (S = 500: tiles of 1024 units, whole 4 KiB
// pages per row) against 0.5 and 1 MiB. Very long sequences get narrow tiles (at least 64
// units) rather than a scratch that grows with S. `bytes`: scratch bytes per unit and step.
static i64 GradTileUnits(i64 units, i64 steps, i64 bytes) {
  i64 tile = (i64(1) << 21) / std::max<i64>(1, steps * bytes);
  tile = std::max<i64>(64, (tile + 15) / 16 * 16);
  return std::max<i64>(1, std::min(units, tile));
}

// Checks the spike gradient given as slots (inputs ids, count, d_values from `first`) against
// currents [B, S, N]: ids and d_values [B, S, K], count [B, S] in [0, K], the filled ids in [0, N).
static dsnn::Status CheckSlots(OpKernelContext* ctx, int first) {
  const Tensor& currents = ctx->input(0);
  const Tensor& ids = ctx->input(first);
  const Tensor& count = ctx->input(first + 1);
  const Tensor& values = ctx->input(first + 2);
  if (currents.dims() != 3) {
    return errors::InvalidArgument("`currents` must have rank 3 [batch, time, units] with slots, got shape ",
                                   currents.shape().DebugString());
  }
  if (ids.dims() != 3 || ids.dim_size(0) != currents.dim_size(0) || ids.dim_size(1) != currents.dim_size(1)) {
    return errors::InvalidArgument("`ids` must have shape [batch, time, K] of `currents` ", currents.shape().DebugString(),
                                   ", got ", ids.shape().DebugString());
  }
  if (values.shape() != ids.shape()) {
    return errors::InvalidArgument("`d_values` must have the shape of `ids` ", ids.shape().DebugString(), ", got ",
                                   values.shape().DebugString());
  }
  if (count.dims() != 2 || count.dim_size(0) != ids.dim_size(0) || count.dim_size(1) != ids.dim_size(1)) {
    return errors::InvalidArgument("`count` must have shape [batch, time] of `ids`, got ", count.shape().DebugString());
  }
  const i64 rows = count.NumElements(), K = ids.dim_size(2), N = currents.dim_size(2);
  const i32* id = ids.flat<i32>().data();
  const i32* cnt = count.flat<i32>().data();
  for (i64 r = 0; r < rows; ++r) {
    if (cnt[r] < 0 || cnt[r] > K) return errors::InvalidArgument("`count` must be in [0, ", K, "], got ", cnt[r]);
    for (i64 k = 0; k < cnt[r]; ++k) {
      if (id[r * K + k] < 0 || id[r * K + k] >= N) {
        return errors::InvalidArgument("`ids` out of range: ", id[r * K + k], " is not in [0, ", N, ")");
      }
    }
  }
  return dsnn::OkStatus();
}

// Inputs after the forward ones: d_spikes [B, S, ...] (or with SLOTS, for the selecting ops:
// ids, count, d_values, the gradient of their values), (d_final_i,) d_final_v, scale.
// Outputs: d_currents, (d_initial_i,) d_initial_v, (d_alpha,) d_beta, d_threshold, d_bias.
template <typename T, bool CUBA, bool SLOTS>
class GradOp : public OpKernel {
 public:
  explicit GradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string reset, surrogate;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reset", &reset));
    OP_REQUIRES_OK(ctx, ParseReset(reset, &reset_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("surrogate", &surrogate));
    OP_REQUIRES_OK(ctx, ParseSurrogate(surrogate, &surrogate_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("stop_reset_grad", &stop_));
  }

  void Compute(OpKernelContext* ctx) override {
    typedef Inputs<CUBA> In;
    const int d_spikes_index = In::kExtra, d_final_i_index = In::kExtra + (SLOTS ? 3 : 1);
    const int d_final_v_index = d_final_i_index + (CUBA ? 1 : 0);
    const int scale_index = d_final_v_index + 1;
    Problem p;
    std::vector<std::vector<T>> rows;
    GradArgs<T> a;
    OP_REQUIRES_OK(ctx, In::template Read<T>(ctx, &p, &rows, &a.q));
    OP_REQUIRES_OK(ctx, SLOTS ? CheckSlots(ctx, d_spikes_index)
                              : CheckSameShape(ctx, d_spikes_index, "d_spikes", 0, "currents"));
    if (CUBA) OP_REQUIRES_OK(ctx, CheckSameShape(ctx, d_final_i_index, "d_final_i", 1, "initial_i"));
    OP_REQUIRES_OK(ctx, CheckSameShape(ctx, d_final_v_index, "d_final_v", In::kV0, "initial_v"));
    const Tensor& scale = ctx->input(scale_index);
    OP_REQUIRES(ctx, scale.dims() == 0,
                errors::InvalidArgument("`scale` must be a scalar, got shape ", scale.shape().DebugString()));
    const T scale_value = scale.scalar<T>()();
    OP_REQUIRES(ctx, scale_value > T(0), errors::InvalidArgument("`scale` must be > 0, got ", scale_value));
    Tensor* d_currents = nullptr;
    if (SLOTS) {  // each row is filled from the slots just before the walk reads it
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &d_currents));
    } else {
      OP_REQUIRES_OK(ctx,
                     ctx->forward_input_or_allocate_output({d_spikes_index}, 0, ctx->input(0).shape(), &d_currents));
    }
    T *d_i0 = nullptr, *d_v0 = nullptr;
    OP_REQUIRES_OK(ctx, (FinalStates<T, CUBA>(ctx, 1, &d_i0, &d_v0)));
    const int params = CUBA ? 4 : 3;
    std::vector<T> sums(static_cast<size_t>(params * p.batch * p.units), T(0));
    a.gs = SLOTS ? d_currents->flat<T>().data() : ctx->input(d_spikes_index).flat<T>().data();
    if (SLOTS) {
      a.ids = ctx->input(d_spikes_index).flat<i32>().data();
      a.count = ctx->input(d_spikes_index + 1).flat<i32>().data();
      a.fill = ctx->input(d_spikes_index + 2).flat<T>().data();
      a.slots = ctx->input(d_spikes_index).dim_size(2);
    }
    a.gi = CUBA ? ctx->input(d_final_i_index).flat<T>().data() : nullptr;
    a.gv = ctx->input(d_final_v_index).flat<T>().data();
    a.di = d_currents->flat<T>().data();
    a.di0 = d_i0;
    a.dv0 = d_v0;
    a.sums = sums.data();
    a.scale = scale_value;
    if (p.batch > 0 && p.units > 0) {
      const i64 tile = GradTileUnits(p.units, p.steps, (CUBA ? 2 : 1) * sizeof(T));
      const i64 units = p.batch * ((p.units + tile - 1) / tile);
      const int reset = reset_, surrogate = surrogate_;
      const bool stop = stop_;
      RunParts(ctx, units, p.steps * tile * (CUBA ? 26 : 20), [&](i64 u0, i64 u1) {
        DSNN_LIF_DISPATCH(Grad, CUBA, reset, surrogate, stop, a, p, tile, u0, u1);
      });
    }
    const int first_param = CUBA ? 3 : 2;
    if (CUBA) {
      OP_REQUIRES_OK(ctx, ReduceParamGrads<T>(ctx, sums, p, params, first_param,
                                              {ctx->input(In::kAlpha).shape(), ctx->input(In::kBeta).shape(),
                                               ctx->input(In::kThreshold).shape(), ctx->input(In::kBias).shape()}));
    } else {
      OP_REQUIRES_OK(ctx, ReduceParamGrads<T>(ctx, sums, p, params, first_param,
                                              {ctx->input(In::kBeta).shape(), ctx->input(In::kThreshold).shape(),
                                               ctx->input(In::kBias).shape()}));
    }
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
    OP_REQUIRES_OK(ctx, Prepare<T>(ctx, {"initial_v"}, {{2, "beta", false}, {3, "bias", true}}, &p, &rows));
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
    OP_REQUIRES_OK(ctx, Prepare<T>(ctx, {"initial_v"}, {{2, "beta", false}}, &p, &rows));
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

template <typename T>
using LifForwardOp = ForwardOp<T, false>;
template <typename T>
using CubaLifForwardOp = ForwardOp<T, true>;
template <typename T>
using LifSelectOp = SelectForwardOp<T, false>;
template <typename T>
using CubaLifSelectOp = SelectForwardOp<T, true>;
template <typename T>
using LifGradOp = GradOp<T, false, false>;
template <typename T>
using CubaLifGradOp = GradOp<T, true, false>;
template <typename T>
using LifSelectGradOp = GradOp<T, false, true>;
template <typename T>
using CubaLifSelectGradOp = GradOp<T, true, true>;

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

REGISTER_OP("DenseSnnsCubaLifForward")
    .Input("currents: T")
    .Input("initial_i: T")
    .Input("initial_v: T")
    .Input("alpha: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Output("spikes: T")
    .Output("final_i: T")
    .Output("final_v: T")
    .Attr("T: {float, double}")
    .Attr("reset: string")
    .SetShapeFn(SameAsInputs)
    .Doc("CuBa-LIF recurrence over a batch-major sequence: spikes [B, S, ...], the final synaptic current and membrane [B, ...].");

REGISTER_OP("DenseSnnsCubaLifGrad")
    .Input("currents: T")
    .Input("initial_i: T")
    .Input("initial_v: T")
    .Input("alpha: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Input("d_spikes: T")
    .Input("d_final_i: T")
    .Input("d_final_v: T")
    .Input("scale: T")
    .Output("d_currents: T")
    .Output("d_initial_i: T")
    .Output("d_initial_v: T")
    .Output("d_alpha: T")
    .Output("d_beta: T")
    .Output("d_threshold: T")
    .Output("d_bias: T")
    .Attr("T: {float, double}")
    .Attr("reset: string")
    .Attr("stop_reset_grad: bool")
    .Attr("surrogate: string")
    .SetShapeFn(SameAsInputs)
    .Doc("Reverse-time gradient of DenseSnnsCubaLifForward with a surrogate spike derivative.");

// The selection ops' outputs: ids, values [B, S, Ke], count, spike_total [B, S], final states.
dsnn::Status SelectionShapes(InferenceContext* c, int states) {
  ::tensorflow::shape_inference::ShapeHandle currents;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &currents));
  int capacity = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("capacity", &capacity));
  const auto units = c->Dim(currents, 2);
  ::tensorflow::shape_inference::DimensionHandle slots = c->UnknownDim();
  if (c->ValueKnown(units)) slots = c->MakeDim(std::min<int64_t>(capacity, c->Value(units)));
  const auto batch = c->Dim(currents, 0), steps = c->Dim(currents, 1);
  c->set_output(0, c->MakeShape({batch, steps, slots}));
  c->set_output(1, c->MakeShape({batch, steps, slots}));
  c->set_output(2, c->MakeShape({batch, steps}));
  c->set_output(3, c->MakeShape({batch, steps}));
  for (int k = 0; k < states; ++k) c->set_output(4 + k, c->input(1 + k));
  return dsnn::OkStatus();
}

REGISTER_OP("DenseSnnsLifSelect")
    .Input("currents: T")
    .Input("initial_v: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Input("second_threshold: T")
    .Output("ids: int32")
    .Output("values: T")
    .Output("count: int32")
    .Output("spike_total: int32")
    .Output("final_v: T")
    .Attr("T: {float, double}")
    .Attr("reset: string")
    .Attr("capacity: int >= 1")
    .Attr("second: {'all', 'above'} = 'all'")
    .SetShapeFn([](InferenceContext* c) { return SelectionShapes(c, 1); })
    .Doc("DenseSnnsLifForward with each step's spikes selected into Ke = min(capacity, units) slots.");

REGISTER_OP("DenseSnnsCubaLifSelect")
    .Input("currents: T")
    .Input("initial_i: T")
    .Input("initial_v: T")
    .Input("alpha: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Input("second_threshold: T")
    .Output("ids: int32")
    .Output("values: T")
    .Output("count: int32")
    .Output("spike_total: int32")
    .Output("final_i: T")
    .Output("final_v: T")
    .Attr("T: {float, double}")
    .Attr("reset: string")
    .Attr("capacity: int >= 1")
    .Attr("second: {'all', 'above'} = 'all'")
    .SetShapeFn([](InferenceContext* c) { return SelectionShapes(c, 2); })
    .Doc("DenseSnnsCubaLifForward with each step's spikes selected into Ke = min(capacity, units) slots.");

REGISTER_OP("DenseSnnsLifSelectGrad")
    .Input("currents: T")
    .Input("initial_v: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Input("ids: int32")
    .Input("count: int32")
    .Input("d_values: T")
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
    .Doc("DenseSnnsLifGrad with the spike gradient given as DenseSnnsLifSelect's slots: d_values at ids, 0 elsewhere.");

REGISTER_OP("DenseSnnsCubaLifSelectGrad")
    .Input("currents: T")
    .Input("initial_i: T")
    .Input("initial_v: T")
    .Input("alpha: T")
    .Input("beta: T")
    .Input("threshold: T")
    .Input("bias: T")
    .Input("ids: int32")
    .Input("count: int32")
    .Input("d_values: T")
    .Input("d_final_i: T")
    .Input("d_final_v: T")
    .Input("scale: T")
    .Output("d_currents: T")
    .Output("d_initial_i: T")
    .Output("d_initial_v: T")
    .Output("d_alpha: T")
    .Output("d_beta: T")
    .Output("d_threshold: T")
    .Output("d_bias: T")
    .Attr("T: {float, double}")
    .Attr("reset: string")
    .Attr("stop_reset_grad: bool")
    .Attr("surrogate: string")
    .SetShapeFn(SameAsInputs)
    .Doc("DenseSnnsCubaLifGrad with the spike gradient given as DenseSnnsCubaLifSelect's slots: d_values at ids, 0 elsewhere.");

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
DSNN_LIF_REGISTER("DenseSnnsCubaLifForward", dense_snns_lif::CubaLifForwardOp)
DSNN_LIF_REGISTER("DenseSnnsCubaLifGrad", dense_snns_lif::CubaLifGradOp)
DSNN_LIF_REGISTER("DenseSnnsLifSelect", dense_snns_lif::LifSelectOp)
DSNN_LIF_REGISTER("DenseSnnsCubaLifSelect", dense_snns_lif::CubaLifSelectOp)
DSNN_LIF_REGISTER("DenseSnnsLifSelectGrad", dense_snns_lif::LifSelectGradOp)
DSNN_LIF_REGISTER("DenseSnnsCubaLifSelectGrad", dense_snns_lif::CubaLifSelectGradOp)
DSNN_LIF_REGISTER("DenseSnnsLeakyForward", dense_snns_lif::LeakyForwardOp)
DSNN_LIF_REGISTER("DenseSnnsLeakyGrad", dense_snns_lif::LeakyGradOp)
