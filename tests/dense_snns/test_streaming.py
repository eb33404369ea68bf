"""The stream runner: windows and reductions, resets, sources of chunks (generators of any
length, tf.data), the progress display, the state-only loop's choice, and its errors."""

import io
import itertools

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras, streaming

B, F, N = 2, 4, 3


def model_and_input(rng, steps=30):
    x = keras.Input((None, F))
    h = ds.SNNDense(6, kernel_initializer=keras.initializers.RandomNormal(0.4, 0.5, seed=1))(x)
    model = keras.Model(x, ds.LeakyReadout(N, bias_initializer=keras.initializers.RandomNormal(seed=2))(h))
    return model, (rng.random((B, steps, F)) < 0.4).astype(np.float32)


def pieces(x, size):
    return [x[:, a : a + size] for a in range(0, x.shape[1], size)]


REDUCE = {
    "sum": lambda y: y.sum(axis=1),
    "max": lambda y: y.max(axis=1),
    "mean": lambda y: y.mean(axis=1),
    "last": lambda y: y[:, -1],
}


@pytest.mark.parametrize("loop", ["steps", "chunks"])
@pytest.mark.parametrize("reduce", streaming.REDUCTIONS)
def test_windows_straddling_chunks_reduce_each_window(reduce, loop, rng):
    model, x = model_and_input(rng)
    stream = streaming.stateful_copy(model, B)
    whole = model(x).numpy()
    # windows of 10 steps over chunks of 7: windows end inside chunks
    got = list(streaming.run_stream(stream, pieces(x, 7), reduce=reduce, window=10, loop=loop))
    want = [REDUCE[reduce](whole[:, a : a + 10]) for a in range(0, 30, 10)]
    assert len(got) == 3
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # reset="window": every window is an independent sample
    got = list(streaming.run_stream(stream, pieces(x, 7), reduce=reduce, window=10, reset="window", loop=loop))
    for g, a in zip(got, range(0, 30, 10)):
        np.testing.assert_allclose(g, REDUCE[reduce](model(x[:, a : a + 10]).numpy()), rtol=1e-5, atol=1e-5)


def test_without_a_window_the_reduction_since_the_start_after_each_chunk(rng):
    model, x = model_and_input(rng)
    stream = streaming.stateful_copy(model, B)
    whole = model(x).numpy()
    got = list(streaming.run_stream(stream, pieces(x, 12), reduce="sum"))
    for g, end in zip(got, [12, 24, 30]):
        np.testing.assert_allclose(g, whole[:, :end].sum(axis=1), rtol=1e-5, atol=1e-5)


def test_an_unbounded_generator_is_consumed_lazily(rng):
    model, x = model_and_input(rng, steps=5)
    stream = streaming.stateful_copy(model, B)
    taken = []

    def endless():
        for i in itertools.count():
            taken.append(i)
            yield x

    results = streaming.run_stream(stream, endless(), reduce="max", window=5)
    first = [next(results) for _ in range(3)]
    assert len(taken) == 3  # one chunk read per window: nothing ahead, nothing kept
    assert all(r.shape == (B, N) for r in first)


def test_a_tf_data_dataset_is_a_source_of_chunks(rng):
    model, x = model_and_input(rng)
    stream = streaming.stateful_copy(model, B)
    dataset = tf.data.Dataset.from_tensor_slices(np.stack(pieces(x, 10)))
    got = np.concatenate(list(streaming.run_stream(stream, dataset)), axis=1)
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-6, atol=1e-6)


def test_reset_false_continues_the_stream(rng):
    model, x = model_and_input(rng)
    stream = streaming.stateful_copy(model, B)
    first, second = x[:, :15], x[:, 15:]
    list(streaming.run_stream(stream, [first]))
    continued = list(streaming.run_stream(stream, [second], reset=False))[0]
    np.testing.assert_allclose(continued, model(x).numpy()[:, 15:], rtol=1e-6, atol=1e-6)


def test_the_progress_display(rng, monkeypatch):
    model, x = model_and_input(rng)
    stream = streaming.stateful_copy(model, B)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    list(streaming.run_stream(stream, pieces(x, 10), reduce="sum", window=10, progress=True))
    assert "stream: 30 steps, 3 windows" in err.getvalue()
    err.truncate(0)
    list(streaming.run_stream(stream, pieces(x, 10)))  # not a terminal: no display by default
    assert err.getvalue() == ""


def test_the_state_only_loop_is_chosen_when_the_model_has_per_step_layers(rng):
    x = keras.Input((None, F))
    h = ds.SNNDense(6)(x)
    h = keras.layers.Dense(5, activation="relu")(h)
    chain = keras.Model(x, ds.LeakyReadout(N)(keras.layers.Dropout(0.5)(h)))
    assert streaming.StepLoop(streaming.stateful_copy(chain, B), "sum").jit_compile
    branches = keras.Model(x, keras.layers.Concatenate()([ds.SNNDense(3)(x), ds.SNNDense(2)(x)]))
    stream = streaming.stateful_copy(branches, B)
    with pytest.raises(ValueError, match="does not take the previous layer's output alone|has no per-step form"):
        streaming.StepLoop(stream, "sum")
    data = (rng.random((B, 8, F)) < 0.5).astype(np.float32)
    with pytest.raises(ValueError, match="loop='steps'"):
        list(streaming.run_stream(stream, [data], reduce="sum", loop="steps"))
    # "auto" runs it chunk by chunk
    got = list(streaming.run_stream(stream, [data], reduce="sum"))[0]
    np.testing.assert_allclose(got, branches(data).numpy().sum(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="is not stateful"):
        streaming.StepLoop(chain, "sum")
    with pytest.raises(ValueError, match="must return sequences"):
        streaming.StepLoop(streaming.stateful_copy(keras.Model(x, ds.SNNDense(3, return_sequences=False)(x)), B), "max")


def test_spike_monitors_pass_spikes_through_the_state_only_loop(rng):
    x = keras.Input((None, F))
    h = ds.SpikeMonitor(regularizer=ds.FiringRateRegularizer(0.1, 1.0))(ds.SNNDense(6)(x))
    model = keras.Model(x, ds.LeakyReadout(N, bias_initializer=keras.initializers.RandomNormal(seed=2))(h))
    data = (rng.random((B, 12, F)) < 0.5).astype(np.float32)
    got = list(streaming.run_stream(streaming.stateful_copy(model, B), pieces(data, 5), reduce="max", loop="steps"))
    np.testing.assert_allclose(got[-1], model(data).numpy().max(axis=1), rtol=1e-5, atol=1e-6)


def test_the_next_stream_of_a_model_reuses_its_compiled_loop(rng):
    model, x = model_and_input(rng)
    stream = streaming.stateful_copy(model, B)
    first = list(streaming.run_stream(stream, pieces(x, 10), reduce="sum", window=10, loop="steps"))
    loop = stream._stream_functions[("steps", "sum")]
    traces = loop._run.experimental_get_tracing_count()
    second = list(streaming.run_stream(stream, pieces(x, 10), reduce="sum", window=10, loop="steps"))
    assert stream._stream_functions[("steps", "sum")] is loop
    assert loop._run.experimental_get_tracing_count() == traces
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_errors_name_the_argument(rng):
    model, x = model_and_input(rng)
    stream = streaming.stateful_copy(model, B)
    with pytest.raises(ValueError, match="carries no states: run a stateful copy"):
        streaming.run_stream(model, [x])
    cases = [
        (dict(reduce="median"), r"`reduce` must be one of \('sum', 'max', 'mean', 'last'\)"),
        (dict(window=5), "`window` must be a positive integer of steps, with a `reduce`"),
        (dict(reduce="sum", window=0), "`window` must be a positive integer"),
        (dict(reset="always"), "`reset` must be 'stream', 'window' or False"),
        (dict(reduce="sum", reset="window"), "reset='window' needs a `window`"),
        (dict(loop="fast"), "`loop` must be 'auto', 'steps' or 'chunks'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            streaming.run_stream(stream, [x], **kwargs)
    with pytest.raises(ValueError, match="chunk 1 has no time step"):
        list(streaming.run_stream(stream, [x, x[:, :0]]))
    with pytest.raises(ValueError, match="the model takes 1 inputs, got 2"):
        list(streaming.run_stream(stream, [[x, x]]))
    inputs = keras.Input((None, F))
    two_outputs = streaming.stateful_copy(keras.Model(inputs, [ds.SNNDense(3)(inputs), ds.SNNDense(2)(inputs)]), B)
    with pytest.raises(ValueError, match=r"`reduce` needs a model with one output \[batch, time, ...\]"):
        list(streaming.run_stream(two_outputs, [x], reduce="sum"))
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            streaming.stateful_copy(model, bad)


def test_a_subclassed_model_cannot_be_copied():
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.snn = ds.SNNDense(3)

        def call(self, x):
            return self.snn(x)

    model = Custom()
    model(np.zeros((1, 2, F), np.float32))
    with pytest.raises(ValueError, match="needs a Sequential or functional model"):
        streaming.stateful_copy(model, 1)


def test_a_sequential_model_and_its_states_file(rng, tmp_path):
    model = keras.Sequential([keras.Input((None, F)), ds.SNNDense(5), ds.LeakyReadout(N)])
    x = (rng.random((B, 12, F)) < 0.4).astype(np.float32)
    stream = streaming.stateful_copy(model, B)
    list(streaming.run_stream(stream, [x[:, :6]]))
    streaming.save_states(stream, tmp_path / "states.npz")
    after = list(streaming.run_stream(stream, [x[:, 6:]], reset=False))[0]
    streaming.reset_states(stream)
    streaming.load_states(stream, tmp_path / "states.npz")
    np.testing.assert_array_equal(list(streaming.run_stream(stream, [x[:, 6:]], reset=False))[0], after)
    np.testing.assert_allclose(after, model(x).numpy()[:, 6:], rtol=1e-6, atol=1e-6)


def test_mixed_precision_layers_step_with_their_float32_state_variables(rng):
    """Under mixed_float16 the carried state variables are float32 and the layers compute in
    float16: the state-only loop gives what one call on the whole sequence gives."""
    import sparse_snns as sp

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = keras.Input((None, F))
        h = ds.SNNDense(
            6, neuron="lif", self_recurrent=True, kernel_initializer=keras.initializers.RandomNormal(0.4, 0.5, seed=1)
        )(x)
        h = sp.SparseSNNDense(5, input_dim=6, capacity=3, neuron="lif", self_recurrent=True)(h)
        model = keras.Model(x, sp.SparseLeakyReadout(N, input_dim=5)(h))
        stream = streaming.stateful_copy(model, B)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    data = (rng.random((B, 20, F)) < 0.5).astype(np.float32)
    carried = [s for states in streaming.get_states(stream).values() for s in states]
    assert len(carried) == 5 and all(s.dtype == np.float32 for s in carried)
    got = list(streaming.run_stream(stream, pieces(data, 8), reduce="max", loop="steps"))[-1]
    np.testing.assert_allclose(
        np.asarray(got, np.float32), model(data).numpy().astype(np.float32).max(axis=1), rtol=1e-3
    )
