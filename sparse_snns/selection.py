"""Spike selection: from membrane-minus-threshold to `SparseSpikes` of fixed capacity."""

from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf

from dense_snns import surrogates

from .format import SparseSpikes, check_capacity, finish_selection
from ._checks import check_implementation
from .rowops import select_indices


def select_spikes(
    x,
    capacity: int,
    second_threshold: Optional[float] = None,
    spike_fn=None,
    strict: bool = False,
    implementation: str = "auto",
) -> Tuple[SparseSpikes, tf.Tensor]:
    """Select the neurons of `x` (membrane minus threshold, [..., N]) into K = `capacity` slots.

    Order of selection: neurons that spike (x > 0, the rule of `dense_snns.surrogates`) and
    neurons whose x is NaN (their value is NaN: a NaN never disappears) in increasing index,
    then non-spiking neurons as gradient-only entries (value 0) in
    increasing index, up to K. `second_threshold` (<= 0, same units as `x`) restricts the
    gradient-only entries to x > second_threshold (near threshold); without it every neuron
    may take a free slot. Selection is O(N) per vector, no sort: one pass of a C++ op, or
    prefix sums in pure TensorFlow (see `sparse_snns.rowops`).

    ``values = spike_fn(x[ids])`` (x gathered at the selected ids), so the forward values are the
    spikes (1) and 0 (NaN for a NaN or infinite x), and the backward pass gives the surrogate gradient to the selected
    neurons only: with K >= N and no second threshold every neuron is selected and this is
    exactly the dense gradient; otherwise it is the dense gradient masked to the selected
    neurons (sparse BPTT).

    Args:
        x: float [..., N], membrane minus threshold.
        capacity: K > 0.
        second_threshold: None or a number <= 0.
        spike_fn: a `dense_snns.surrogates.Surrogate` (name, config or object); default
            ``superspike``.
        strict: raise when spikes do not fit (ValueError naming the capacity when eager; a
            run-time assertion in graph mode; XLA compiles assertions out: use `dropped`).
        implementation: ``"auto"`` (the C++ ops when available, the dtype is float32/float64
            and the call is not compiled by XLA; the first such call builds them), ``"kernel"``
            or ``"compiled"`` (pure TensorFlow, e.g. for a SavedModel without the custom library).
    Returns: (SparseSpikes, dropped int32 [...]: spikes that did not fit; gradient-only
    entries that do not fit are not counted).
    """
    capacity = check_capacity(capacity)
    if second_threshold is not None and not float(second_threshold) <= 0.0:
        raise ValueError(
            f"second_threshold must be <= 0 (below the threshold), got second_threshold={second_threshold!r}"
        )
    spike_fn = surrogates.get(spike_fn)
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"`x` (membrane minus threshold) must be floating, got dtype {x.dtype.name}")
    if x.shape.rank is None or x.shape[-1] is None:
        raise ValueError(f"`x` needs a known last dimension (neurons), got shape {x.shape}")
    n = int(x.shape[-1])

    check_implementation(implementation)
    k_eff = min(capacity, n)
    second, threshold = ("all", 0.0) if second_threshold is None else ("above", float(second_threshold))
    ids, count, total_spikes, gathered = select_indices(
        x, capacity, "positive", second, threshold, implementation=implementation, gather=True
    )
    dropped = tf.maximum(total_spikes - k_eff, 0)

    # The spike function is elementwise: applied to the K gathered entries only, its
    # gradient reaches x at the selected neurons only (the gather's gradient drops padding).
    # Padding gathers 0 and H(0) = 0, so padding values are 0 without a mask.
    values = spike_fn(gathered)
    return finish_selection(ids, values, count, dropped, capacity, strict)
