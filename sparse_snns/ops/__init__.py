"""The C++ CPU kernels of sparse_snns (SparseLinear; spike selection, row gathers and
scatters), built from source into one library at first use (see `_loader`).

`op_available()` builds and loads them on the first call; `load_error()` says why they are
unavailable. Everything in `sparse_snns` works without them (pure-TensorFlow path).
"""

from __future__ import annotations

from ._loader import cache_dir, load, load_error, loaded_path, op_available

__all__ = ["cache_dir", "load", "load_error", "loaded_path", "op_available"]
