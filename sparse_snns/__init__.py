"""sparse_snns: spiking neural networks with dynamically sparse spikes and static shapes.

Builds on `dense_snns` (same neuron math and surrogates). Spikes travel between layers as
`SparseSpikes` (ids int32 [..., K], values float [..., K], count int32 [...]): at most K
events per vector, padded to a static capacity K, so the same code runs eagerly, in
`tf.function`, under XLA and on the IPU. Which neurons are active changes every step; the
tensor shapes never do.

The C++ CPU kernels (`sparse_snns.ops`: SparseLinear, spike selection, row gathers and
scatters, one library) are built from source at the first call that may use them: any
``implementation="auto"`` or ``"kernel"`` call of `sparse_linear`, `select_spikes`,
`from_dense` or `to_dense` and the layers built on them. Without a C++ compiler everything
runs in pure TensorFlow (with one warning); ``implementation="compiled"`` never builds or loads
the library, e.g. for a SavedModel that must not need it.
"""

from __future__ import annotations

from . import format
from .format import (
    SparseSpikes,
    default_capacity,
    describe,
    from_dense,
    from_dense_with_overflow,
    to_dense,
    validate,
)
from . import linear, ops
from .linear import SparseLinear, sparse_linear
from .selection import select_spikes
from .blocks import SparseSNNBlock, SparseSNNDense, SparseToDense, pack_spikes, unpack_spikes
from .readouts import SparseLeakyReadout
from . import rowops
from .data import max_events_per_step, sparse_dataset, to_sparse_inputs

__all__ = [
    "SparseLeakyReadout",
    "SparseLinear",
    "SparseSNNBlock",
    "SparseSNNDense",
    "SparseToDense",
    "SparseSpikes",
    "default_capacity",
    "describe",
    "format",
    "from_dense",
    "from_dense_with_overflow",
    "linear",
    "max_events_per_step",
    "ops",
    "pack_spikes",
    "rowops",
    "select_spikes",
    "sparse_dataset",
    "sparse_linear",
    "to_dense",
    "to_sparse_inputs",
    "unpack_spikes",
    "validate",
]
