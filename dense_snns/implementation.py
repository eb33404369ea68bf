"""How a computation runs: one vocabulary and one resolver for every layer and function.

Every layer and function of `dense_snns`, `sparse_snns` and `snns_as_gnn` that has more than
one implementation takes ``implementation=``:

- ``"auto"`` (default): the C++ kernels when they can run this call, else ``"compiled"``;
- ``"kernel"``: the C++ kernels (`dense_snns.ops`, `sparse_snns.ops`); an
  `ImplementationError` says why when they cannot run this call (XLA around it, an
  unsupported neuron model, surrogate, dtype or option, no compiler, ...);
- ``"compiled"``: pure TensorFlow, compiled (XLA) time loops with hand-written BPTT where
  there is a time loop; the library of C++ kernels is never built, loaded or put in the
  graph (e.g. for a SavedModel used where it is absent). This is what XLA and the IPU run;
- ``"reference"``: the readable reference the others are tested against: the step
  function in a plain `tf.while_loop` with TensorFlow's autodiff. Where there is no time
  loop (a sparse product, a selection) it is the same as ``"compiled"``.

The names of earlier versions still work, with a DeprecationWarning: ``"op"`` is
``"kernel"``, ``"tf"`` and ``"fused"`` are ``"compiled"``, ``"loop"`` is ``"reference"``.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence, Union

__all__ = ["IMPLEMENTATIONS", "ImplementationError", "check", "resolve"]

#: The values of every `implementation` argument.
IMPLEMENTATIONS = ("auto", "kernel", "compiled", "reference")

#: Names of earlier versions and what they are now.
RENAMED = {"op": "kernel", "tf": "compiled", "fused": "compiled", "loop": "reference"}


class ImplementationError(ValueError):
    """An `implementation` that is unknown, or that cannot run this call (the message says why)."""

    # AutoGraph re-raises an error from traced code as its own type only for the built-in
    # types and for those whose constructor is Exception's (else as a StagingError).
    __init__ = Exception.__init__


def check(value, allowed: Sequence[str] = IMPLEMENTATIONS) -> str:
    """`value` as one of `allowed`, a name of an earlier version mapped with a
    DeprecationWarning; an `ImplementationError` otherwise."""
    if isinstance(value, str) and value in RENAMED:
        new = RENAMED[value]
        warnings.warn(
            f"implementation={value!r} is deprecated; use implementation={new!r}", DeprecationWarning, stacklevel=3
        )
        value = new
    if not isinstance(value, str) or value not in allowed:
        raise ImplementationError(f"implementation must be one of {tuple(allowed)}, got implementation={value!r}")
    return value


def resolve(requested: str, kernel_refusal: Union[None, str, Callable[[], Optional[str]]], what: str) -> str:
    """The implementation that runs: "kernel", "compiled" or "reference".

    Args:
        requested: a checked `implementation` value.
        kernel_refusal: why the kernels cannot run this call (None if they can), or a
            function returning that (called only when needed: it may build the library).
        what: the computation, for the error message (e.g. "SNNDense 'dense'").
    """
    if requested in ("compiled", "reference"):
        return requested
    refusal = kernel_refusal() if callable(kernel_refusal) else kernel_refusal
    if refusal is None:
        return "kernel"
    if requested == "kernel":
        raise ImplementationError(f"implementation='kernel' cannot run {what}: {refusal}")
    return "compiled"
