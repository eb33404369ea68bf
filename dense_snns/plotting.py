"""Recording state traces of a cell and plotting spike rasters and membrane traces."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from .validation import as_numeric_tensor, check_rank


def record_traces(cell, inputs, initial_state=None) -> Dict[str, np.ndarray]:
    """Run an RNN cell step by step and record its outputs and states.

    Args:
        cell: a built or unbuilt RNN cell (`SNNBlock`, a neuron cell, `LeakyReadoutCell`).
        inputs: [batch, time, features].
        initial_state: optional list of states; zeros by default.
    Returns: ``{"outputs": [batch, time, units], <state name>: [batch, time, units], ...}``
    with the cell's `state_names` (e.g. ``"u"``, ``"v"`` for `LIFNeuron`; ``"i"``, ``"v"`` for
    `CubaLIF`), or ``state_0``, ``state_1``, ... for cells without names.
    """
    x = as_numeric_tensor(inputs, "inputs", cell.compute_dtype)
    check_rank(x, 3, "inputs", "[batch, time, features]")
    states = initial_state if initial_state is not None else cell.get_initial_state(batch_size=tf.shape(x)[0])
    outputs, traces = [], [[] for _ in states]
    for t in range(x.shape[1]):
        out, states = cell(x[:, t], states)
        states = tf.nest.flatten(states)
        outputs.append(out)
        for trace, state in zip(traces, states):
            trace.append(state)
    record = {"outputs": tf.stack(outputs, axis=1).numpy()}
    names = list(getattr(cell, "state_names", [])) or [f"state_{i}" for i in range(len(traces))]
    for name, trace in zip(names, traces):
        record[name] = tf.stack(trace, axis=1).numpy()
    return record


def plot_raster_and_membrane(
    spike_rasters: Sequence[np.ndarray],
    membrane: np.ndarray,
    path: str,
    titles: Optional[Sequence[str]] = None,
    threshold: Optional[float] = None,
    dt_label: str = "time step",
) -> str:
    """Save a figure with one spike raster per layer and membrane traces below it.

    Args:
        spike_rasters: per layer, a [time, units] 0/1 array of one sample.
        membrane: [time, n] membrane traces of a few neurons.
        path: output image file (PNG).
        titles: one title per raster.
        threshold: drawn as a dashed line on the membrane panel if given.
    Returns: `path`.
    """
    plt = _pyplot()
    n = len(spike_rasters)
    fig, axes = plt.subplots(n + 1, 1, figsize=(8, 2.2 * (n + 1)), sharex=True)
    _draw_rasters(axes, spike_rasters, titles)
    axes[n].plot(np.asarray(membrane))
    if threshold is not None:
        axes[n].axhline(threshold, color="gray", linestyle="--", linewidth=1)
    axes[n].set_ylabel("membrane")
    axes[n].set_xlabel(dt_label)
    axes[n].set_title("membrane traces", fontsize=9)
    return _save(plt, fig, path)


def plot_rasters(
    spike_rasters: Sequence[np.ndarray], path: str, titles: Optional[Sequence[str]] = None, dt_label: str = "time step"
) -> str:
    """Save a figure with one spike raster per layer ([time, units] arrays of one sample)
    to `path` (PNG). Returns `path`."""
    plt = _pyplot()
    n = len(spike_rasters)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True, squeeze=False)
    axes = axes[:, 0]
    _draw_rasters(axes, spike_rasters, titles)
    axes[-1].set_xlabel(dt_label)
    return _save(plt, fig, path)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install .[plots] (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_rasters(axes, spike_rasters, titles) -> None:
    for i, raster in enumerate(spike_rasters):
        t_idx, unit_idx = np.nonzero(np.asarray(raster))
        axes[i].scatter(t_idx, unit_idx, s=2, c="k", marker="|")
        axes[i].set_ylabel("unit")
        axes[i].set_ylim(-0.5, np.asarray(raster).shape[1] - 0.5)
        axes[i].set_title(titles[i] if titles else f"layer {i}", fontsize=9)


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
