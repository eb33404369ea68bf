"""C++ CPU kernels of dense_snns and the machinery that builds C++ op libraries at first use.

- `OpLibrary` (`_build`): sources shipped with the package, compiled against the installed
  TensorFlow into a cached shared library at the first `load()`; used here and by
  `sparse_snns.ops`.
- `lif` (`lif_ops.cc`): the LIF recurrence of a whole sequence and its reverse-time
  gradient, the kernel behind the fused layers for `LIF` neurons (`lif.lif_recurrence`).

Everything works without a compiler: callers fall back to their compiled TensorFlow loops.
"""
from __future__ import annotations

from ._build import OpLibrary, cache_dir, compiler, in_xla_context, ops_disabled

__all__ = ["OpLibrary", "cache_dir", "compiler", "in_xla_context", "ops_disabled"]
