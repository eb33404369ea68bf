// What the C++ kernels of lif_ops.cc implement: one table, read by the kernels (to parse
// their attributes) and by Python (dense_snns.ops.lif.KERNEL_TABLE, to send everything else
// to the compiled TensorFlow loops before a forward pass runs). Python parses the X(...)
// entries of each list below: keep one entry per line, in this form.

#ifndef DENSE_SNNS_OPS_KERNEL_TABLE_H_
#define DENSE_SNNS_OPS_KERNEL_TABLE_H_

// Neuron models (names of dense_snns.neurons) with a forward and a gradient kernel:
// lif -> DenseSnnsLifForward/Grad (and DenseSnnsLifSelect), cuba_lif ->
// DenseSnnsCubaLifForward/Grad (and DenseSnnsCubaLifSelect), leaky_integrator ->
// DenseSnnsLeakyForward/Grad.
#define DSNN_KERNEL_MODELS(X) \
  X(lif)                      \
  X(cuba_lif)                 \
  X(leaky_integrator)

// Reset modes of the lif and cuba_lif kernels (dense_snns.neurons.RESET_MODES) and their enum value.
#define DSNN_KERNEL_RESETS(X) \
  X(subtract, kSubtract)      \
  X(zero, kZero)              \
  X(none, kNone)

// Surrogate spike derivatives of the lif and cuba_lif gradients (names of dense_snns.surrogates) and the
// closed form that computes each (see SurrogateOf in lif_ops.cc).
#define DSNN_KERNEL_SURROGATES(X) \
  X(superspike, kSuperspike)      \
  X(fast_sigmoid, kSuperspike)    \
  X(rational, kRational)          \
  X(arctan, kArctan)              \
  X(sigmoid, kSigmoid)            \
  X(triangle, kTriangle)          \
  X(boxcar, kBoxcar)

#endif  // DENSE_SNNS_OPS_KERNEL_TABLE_H_
