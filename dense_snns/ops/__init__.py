"""C++ CPU kernels of dense_snns and the machinery that builds C++ op libraries at first use.

- `OpLibrary` (`_build`): sources shipped with the package, compiled against the installed
  TensorFlow into a cached shared library at the first `load()`; used here and by
  `sparse_snns.ops`.
- `lif` (`lif_ops.cc`): the LIF, CuBa-LIF and leaky-integrator recurrences of a whole
  sequence and their reverse-time gradients, the kernels behind the fused layers for the
  models of their table and behind the readouts (`lif.lif_recurrence`,
  `lif.cuba_lif_recurrence`, `lif.leaky_integrator_recurrence`), and the recurrences with
  each step's spikes selected into K slots, behind `sparse_snns.SparseSNNDense`
  (`lif.select_recurrence`).

Everything works without a compiler: callers fall back to their compiled TensorFlow loops.
"""

from __future__ import annotations

import os

from ._build import OpLibrary, cache_dir, compiler, in_xla_context, ops_disabled, show_build_messages

#: The directory of the headers every C++ library of the project may include (``simd.h``:
#: vector types, instruction-set detection, work splitting).
INCLUDE_DIR = os.path.dirname(os.path.abspath(__file__))
#: The shared header, part of the cache key of every library that includes it.
SIMD_HEADER = os.path.join(INCLUDE_DIR, "simd.h")

__all__ = [
    "INCLUDE_DIR",
    "OpLibrary",
    "SIMD_HEADER",
    "cache_dir",
    "compiler",
    "in_xla_context",
    "ops_disabled",
    "show_build_messages",
]
