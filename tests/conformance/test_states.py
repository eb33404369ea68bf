"""State across calls, the same for every sequence layer and model kind: chunked streams equal
one call on the whole sequence (chunks of 1, 7 and T steps), the state-only loop equals the
reduction of that call, states are reset between streams, read and written, saved
mid-stream and continued in a fresh process, and a chunk that does not fit is refused with
the states left intact."""

import inspect
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
import snns_as_gnn
import sparse_snns as sp
from dense_snns import keras, streaming
from dense_snns.stateful import StatefulLayer

from registry import B, CASES, F, T, case, graph, init, sparse_spikes

#: Registry cases of the layers with a `stateful` option (cells run in ``keras.layers.RNN``).
LAYER_CASES = [c.name for c in CASES if isinstance(c.cls, type) and issubclass(c.cls, StatefulLayer)]
CELL_CASES = ["snn_block", "leaky_readout_cell", "graph_snn_cell", "cell_alif"]


def stream_input(tensor):
    """keras.Input for [batch, any number of steps, ...] of `tensor`'s layout."""
    return keras.Input((None,) + tuple(tensor.shape[2:]), dtype=tensor.dtype.name)


def layer_model(name, rng):
    c = case(name)
    inputs = c.inputs(rng, "float32")
    model_inputs = [stream_input(t) for t in inputs] if isinstance(inputs, list) else stream_input(inputs)
    layer = c.make("float32")
    outputs = layer(model_inputs)
    if isinstance(outputs, list):  # sparse spikes, scattered
        outputs = sp.SparseToDense(layer.units)(outputs)
    return keras.Model(model_inputs, outputs), inputs


def stacked_model(rng):
    """Two fused layers and a readout (one stack) and a stack of cells in one RNN."""
    x = keras.Input((None, F))
    # Every initializer seeded: the model must not depend on the global random state (with
    # some draws a layer stays silent and the output is 0).
    recurrent = keras.initializers.Orthogonal(seed=6)
    h = ds.SNNDense(7, neuron="alif", self_recurrent=True, kernel_initializer=init(1), recurrent_initializer=recurrent)(
        x
    )
    h = keras.layers.RNN(
        [ds.SNNBlock(6, kernel_initializer=init(2)), ds.SNNBlock(5, neuron="lif", kernel_initializer=init(5))],
        return_sequences=True,
    )(h)
    h = ds.apply_layers(ds.stacked_rnn_layers([ds.SNNBlock(6, kernel_initializer=init(3))]), h)
    return keras.Model(x, ds.LeakyReadout(4, kernel_initializer=init(7))(h)), case("snn_dense").inputs(rng, "float32")


def sparse_model(rng):
    inputs = sparse_spikes(rng, "float32")
    model_inputs = [stream_input(t) for t in inputs]
    h = sp.SparseSNNDense(8, F, capacity=5, self_recurrent=True, neuron="lif", kernel_initializer=init(4))(model_inputs)
    h = sp.SparseSNNDense(6, 8, capacity=6, kernel_initializer=init(5))(h)
    return keras.Model(model_inputs, sp.SparseLeakyReadout(4, 6)(h)), inputs


def graph_model(rng):
    x = keras.Input((None, F))
    h = snns_as_gnn.GraphSNN(graph(), kernel_initializer=init(11), bias_initializer=init(12, 0.0, 0.2))(x)
    h = ds.SNNDense(5, kernel_initializer=init(6))(h)
    return keras.Model(x, ds.LeakyReadout(3)(h)), case("snn_dense").inputs(rng, "float32")


def cell_model(name, rng):
    c = case(name)
    inputs = c.inputs(rng, "float32")
    x = stream_input(inputs)
    return keras.Model(x, c.make("float32")(x)), inputs


MODELS = {
    **{name: (lambda rng, name=name: layer_model(name, rng)) for name in LAYER_CASES},
    **{f"rnn_{name}": (lambda rng, name=name: cell_model(name, rng)) for name in CELL_CASES},
    "stacked": stacked_model,
    "sparse": sparse_model,
    "graph": graph_model,
}


def chunks_of(inputs, size):
    steps = int(tf.nest.flatten(inputs)[0].shape[1])
    return [tf.nest.map_structure(lambda t: t[:, a : a + size], inputs) for a in range(0, steps, size)]


def test_every_layer_with_a_stateful_option_is_covered():
    stateful = set()
    for package in (ds, sp, snns_as_gnn):
        for name in package.__all__:
            obj = getattr(package, name)
            if inspect.isclass(obj) and "stateful" in inspect.signature(obj.__init__).parameters:
                stateful.add(obj)
    covered = {case(name).cls for name in LAYER_CASES}
    # EProp (a trainer model) carries its traces across fit batches: tested in test_eprop.py
    assert stateful - {ds.SNNSequenceLayer, ds.EProp} == covered
    assert {ds.SNNDense, ds.SNNConv1D, ds.SNNConv2D, ds.LeakyReadout, sp.SparseSNNDense, sp.SparseLeakyReadout,
            snns_as_gnn.GraphSNN} <= covered  # fmt: skip


@pytest.mark.parametrize("size", [1, 7, T])
@pytest.mark.parametrize("name", list(MODELS))
def test_chunked_stream_equals_one_call(name, size, rng):
    model, inputs = MODELS[name](rng)
    whole = model(inputs).numpy()
    stream = streaming.stateful_copy(model, B)
    outputs = list(streaming.run_stream(stream, chunks_of(inputs, size)))
    assert [o.shape[1] for o in outputs] == [c for c in [size] * (T // size) + [T % size] if c]
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), whole, rtol=1e-6, atol=1e-6)
    assert np.abs(whole).sum() > 0


@pytest.mark.parametrize("reduce", ["sum", "max"])
@pytest.mark.parametrize("name", list(MODELS))
def test_the_state_only_loop_equals_the_reduced_call(name, reduce, rng):
    model, inputs = MODELS[name](rng)
    whole = model(inputs).numpy()
    stream = streaming.stateful_copy(model, B)
    loop = streaming.StepLoop(stream, reduce)
    accumulator = None
    for chunk in chunks_of(inputs, 4):
        accumulator = loop(chunk, accumulator)
    want = whole.sum(axis=1) if reduce == "sum" else whole.max(axis=1)
    np.testing.assert_allclose(accumulator.numpy(), want, rtol=1e-5, atol=1e-5)


def test_streams_are_reset_and_states_round_trip(rng):
    model, inputs = graph_model(rng)
    stream = streaming.stateful_copy(model, B)
    first, second = chunks_of(inputs, 5)
    fresh = list(streaming.run_stream(stream, [second]))[0]
    continued = list(streaming.run_stream(stream, [first, second]))[1]
    assert np.abs(fresh - continued).max() > 0  # the states carried from `first` matter
    np.testing.assert_array_equal(list(streaming.run_stream(stream, [second]))[0], fresh)  # reset
    list(streaming.run_stream(stream, [first]))
    paused = streaming.get_states(stream)
    assert sorted(path.rstrip("_0123456789") for path in paused) == ["graph_snn", "leaky_readout", "snn_dense"]
    streaming.reset_states(stream)
    assert all(np.all(s == 0) for states in streaming.get_states(stream).values() for s in states)
    streaming.set_states(stream, paused)
    np.testing.assert_array_equal(list(streaming.run_stream(stream, [second], reset=False))[0], continued)


def test_set_states_checks_everything_before_changing_anything(rng):
    model, inputs = stacked_model(rng)
    stream = streaming.stateful_copy(model, B)
    list(streaming.run_stream(stream, [inputs]))
    before = streaming.get_states(stream)
    bad = {path: [np.zeros_like(s) for s in states] for path, states in before.items()}
    last = sorted(bad)[-1]
    bad[last][0] = np.zeros((B + 1,) + bad[last][0].shape[1:])
    with pytest.raises(ValueError, match=rf"states\['{last}'\]\[0\] must have shape \({B}, .*got shape \({B + 1}, "):
        streaming.set_states(stream, bad)
    with pytest.raises(ValueError, match="must name the stateful layers"):
        streaming.set_states(stream, {})
    after = streaming.get_states(stream)
    for path in before:
        for a, b in zip(before[path], after[path]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["snn_dense", "sparse_snn_dense", "graph_snn", "sparse"])
def test_a_chunk_that_does_not_fit_is_refused_and_the_states_kept(name, rng):
    model, inputs = MODELS[name](rng)
    stream = streaming.stateful_copy(model, B)
    first = chunks_of(inputs, 4)[0]
    list(streaming.run_stream(stream, [first]))
    before = streaming.get_states(stream)
    other_batch = tf.nest.map_structure(lambda t: t[: B - 1], first)
    shape = tuple(tf.nest.flatten(other_batch)[0].shape)
    with pytest.raises(ValueError, match=rf"chunk 0 has shape \({B - 1}, 4.*the stream takes \({B}, None"):
        list(streaming.run_stream(stream, [other_batch], reset=False))
    layer = [layer for layer in stream.layers if isinstance(layer, StatefulLayer)][0]
    with pytest.raises(
        ValueError, match=rf"batch size {B} \(shape \({B}, .*batch size {B - 1} \(shape {re.escape(str(shape))}"
    ):
        layer(other_batch if isinstance(other_batch, list) else other_batch)
    if not isinstance(first, list):
        wider = tf.concat([first, first[..., :1]], axis=-1)
        with pytest.raises(ValueError, match=rf"chunk 0 has shape \({B}, 4, {F + 1}\).*\({B}, None, {F}\)"):
            list(streaming.run_stream(stream, [wider], reset=False))
        with pytest.raises(ValueError, match=rf"{F + 1}.*{F}|{F}.*{F + 1}"):
            layer(wider)
    after = streaming.get_states(stream)
    for path in before:
        for a, b in zip(before[path], after[path]):
            np.testing.assert_array_equal(a, b)


RESUME = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import dense_snns as ds
    import snns_as_gnn  # noqa: F401 - registers its layers for loading
    import sparse_snns  # noqa: F401
    from dense_snns import keras, streaming

    model_path, states_path, chunk_path, out_path = sys.argv[1:]
    model = keras.models.load_model(model_path, custom_objects=ds.custom_objects())
    streaming.load_states(model, states_path)
    chunk = np.load(chunk_path)
    chunk = [chunk[k] for k in sorted(chunk.files)] if len(chunk.files) > 1 else chunk[chunk.files[0]]
    outputs = list(streaming.run_stream(model, [chunk], reset=False))[0]
    np.save(out_path, outputs)
    """
)


@pytest.mark.parametrize("name", ["stacked", "sparse", "graph"])
def test_saved_mid_stream_continues_in_a_fresh_process(name, rng, tmp_path):
    model, inputs = MODELS[name](rng)
    stream = streaming.stateful_copy(model, B)
    first, second = chunks_of(inputs, 5)
    list(streaming.run_stream(stream, [first]))
    stream.save(str(tmp_path / "stream.keras"))
    streaming.save_states(stream, str(tmp_path / "states.npz"))
    parts = second if isinstance(second, list) else [second]
    np.savez(tmp_path / "chunk.npz", **{f"part{i}": t.numpy() for i, t in enumerate(parts)})
    here = list(streaming.run_stream(stream, [second], reset=False))[0]
    files = [str(tmp_path / f) for f in ("stream.keras", "states.npz", "chunk.npz", "out.npy")]
    subprocess.run([sys.executable, "-c", RESUME, *files], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), here)
