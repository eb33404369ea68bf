"""The library of the C++ kernels of sparse_snns, built at first use by
`dense_snns.ops.OpLibrary` (see there: cache directory, compiler choice, fallback).

The source `select_ops.cc` (spike selection, row gathers and scatters), with the header
`spikes_common.h` of dense_snns/ops, is built into the shared library
`sparse_snns_ops-<tf version>-<hash>.so`. Its first `load()` happens in any
``implementation="auto"`` or ``"kernel"`` call of `select_spikes`, `from_dense`, `to_dense` or
the `sparse_snns.rowops` functions. SparseLinear's product kernels are dense_snns' event
products (`dense_snns.ops.events`).
"""

from __future__ import annotations

import os

from dense_snns.ops import INCLUDE_DIR, SIMD_HEADER, OpLibrary, cache_dir

__all__ = ["LIBRARY", "cache_dir", "load", "load_error", "loaded_path", "op_available"]

LIBRARY = OpLibrary(
    directory=os.path.dirname(os.path.abspath(__file__)),
    sources=("select_ops.cc",),
    headers=(os.path.join(INCLUDE_DIR, "spikes_common.h"), SIMD_HEADER),
    include_dirs=(INCLUDE_DIR,),
    prefix="sparse_snns_ops",
    description="sparse_snns: the C++ ops (spike selection, row gathers and scatters)",
)

load = LIBRARY.load
op_available = LIBRARY.op_available
load_error = LIBRARY.load_error
loaded_path = LIBRARY.loaded_path
