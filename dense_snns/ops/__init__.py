"""C++ CPU kernels of dense_snns and the machinery that builds C++ op libraries at first use.

- `OpLibrary` (`_build`): sources shipped with the package, compiled against the installed
  TensorFlow into a cached shared library at the first `load()`; used here and by
  `sparse_snns.ops`.
- `lif` (`lif_ops.cc`): the LIF and leaky-integrator recurrences of a whole sequence and
  their reverse-time gradients, the kernels behind the fused layers for `LIF` neurons and
  behind the readouts (`lif.lif_recurrence`, `lif.leaky_integrator_recurrence`).

Everything works without a compiler: callers fall back to their compiled TensorFlow loops.
"""

from __future__ import annotations

from ._build import OpLibrary, cache_dir, compiler, in_xla_context, ops_disabled

__all__ = ["OpLibrary", "cache_dir", "compiler", "in_xla_context", "ops_disabled"]
