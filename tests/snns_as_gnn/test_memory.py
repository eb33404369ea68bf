"""Building and dropping graph layers releases them: a hyper-parameter search builds thousands
of models in one process. Dropped layers and their cells are freed; equal layers share one
step and its compiled loops (TensorFlow keeps every XLA compilation of a function for the
life of the process, so a new trace per layer would grow memory without bound); the shared
steps are bounded, and an evicted step's traced loops are freed too."""

import gc
import os
import weakref

import numpy as np
import pytest
import tensorflow as tf

from dense_snns import fused
from snns_as_gnn import GraphSNN, SNNGraph

SEED_GRAPH = [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_train_and_drop(graph, x, **kwargs):
    """Weak references to one trained GraphSNN, its cell and its step."""
    layer = GraphSNN(graph, **kwargs)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    tape.gradient(loss, layer.trainable_weights)
    return [weakref.ref(layer), weakref.ref(layer.cell), weakref.ref(layer.cell.graph_step(tf.float32))]


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to read resident memory")
def test_fifty_dropped_graphs_are_released_and_memory_stays_flat(rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=16, inputs=[0], outputs=[4])
    x = tf.constant((rng.random((4, 20, 8)) < 0.3).astype(np.float32))
    for _ in range(5):  # warm-up: TensorFlow's own caches and pools fill once
        build_train_and_drop(graph, x)
    gc.collect()
    before = resident_mib()
    references = [build_train_and_drop(graph, x) for _ in range(50)]
    gc.collect()
    assert all(layer() is None and cell() is None for layer, cell, _ in references)
    steps = {id(step()) for _, _, step in references}
    assert len(steps) == 1  # one shared step, traced and compiled once
    forward, backward = references[0][2]()._compiled_loops[True]
    assert forward.experimental_get_tracing_count() == backward.experimental_get_tracing_count() == 1
    growth = resident_mib() - before
    # Before the loops were shared and the spike function's gradient registered once, 40 such
    # graphs added about 450 MB.
    assert growth < 60, f"resident memory grew by {growth:.0f} MiB for 50 dropped layers"


def test_evicted_steps_and_their_traced_loops_are_released(rng, monkeypatch):
    monkeypatch.setattr(fused, "SHARED_STEPS", 2)
    x = tf.constant((rng.random((2, 6, 3)) < 0.4).astype(np.float32))
    references = []
    for units in range(2, 8):  # six different graphs
        graph = SNNGraph.from_adjacency([[], [0]], units=units, inputs=[0], outputs=[1])
        layer_ref, _, step_ref = build_train_and_drop(graph, x, jit_compile=False)
        forward, _ = step_ref()._compiled_loops[False]
        references.append((layer_ref, step_ref, weakref.ref(forward)))
        del forward
    gc.collect()
    alive = [[ref() is not None for ref in refs] for refs in references]
    assert alive[:4] == [[False, False, False]] * 4  # layers gone, steps evicted: all freed
    assert alive[4:] == [[False, True, True]] * 2  # the last two steps are still shared
