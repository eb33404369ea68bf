"""SparseSNNDense: equal to the dense block with K >= N, sparse BPTT otherwise, overflow metric."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras
from dense_snns.ops import lif as lif_ops
from sparse_snns.blocks import SparseSNNDense, SparseToDense
from sparse_snns.format import SparseSpikes, from_dense, to_dense

from conftest import compile_kwargs, needs_compile_jit

B, T, F, N = 3, 10, 9, 7


def raster(rng, shape=(B, T, F), p=0.35):
    return tf.constant((rng.random(shape) < p).astype(np.float32))


def pair(self_recurrent, capacity=N, second_threshold=None, neuron="lif", implementation="auto"):
    def make():
        lowered = {
            p.name: 0.3 if p.name != "u_thresh" else 0.1 for p in ds.neurons.get(neuron).params if p.kind == "threshold"
        }
        return ds.NEURON_MODELS[neuron](N, **lowered)

    dense = ds.SNNDense(
        N,
        neuron=make(),
        self_recurrent=self_recurrent,
        kernel_initializer=keras.initializers.RandomNormal(0.2, 0.5, seed=7),
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.2, seed=8),
    )
    sparse = SparseSNNDense(
        N,
        input_dim=F,
        capacity=capacity,
        second_threshold=second_threshold,
        neuron=make(),
        self_recurrent=self_recurrent,
        implementation=implementation,
    )
    return dense, sparse


def copy_weights(dense, sparse):
    weights = dense.cell.get_weights()
    sparse.synapse.set_weights([weights[0], weights[-1]] if dense.cell.use_bias else [weights[0]])
    if dense.cell.self_recurrent:
        sparse.recurrent_kernel.assign(weights[1])


def by_name(weights, grads):
    """{weight name without scope and suffix: gradient}."""
    return dict(zip([w.name.split("/")[-1].split(":")[0] for w in weights], grads))


def weighted(y):
    return tf.reduce_sum(y * np.linspace(0.5, 1.5, y.shape[-1]).astype(np.float32))


@pytest.mark.parametrize("self_recurrent", [False, True])
@pytest.mark.parametrize("neuron", [name for name, model in ds.neurons.MODELS.items() if model.spiking])
def test_full_capacity_equals_dense_block(rng, self_recurrent, neuron):
    x = raster(rng)
    dense, sparse = pair(self_recurrent, neuron=neuron)
    dense(x)
    sparse(x)
    copy_weights(dense, sparse)
    sparse_input = list(from_dense(x, F))  # the same input, already sparse
    with tf.GradientTape(persistent=True) as tape:
        a = dense(x)
        b = to_dense(SparseSpikes(*sparse(sparse_input)), N)
        la, lb = weighted(a), weighted(b)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < a.numpy().sum() < a.numpy().size
    grads_dense = by_name(dense.trainable_weights, tape.gradient(la, dense.trainable_weights))
    grads_sparse = by_name(sparse.trainable_weights, tape.gradient(lb, sparse.trainable_weights))
    assert set(grads_dense) == set(grads_sparse)
    for name, g in grads_dense.items():
        np.testing.assert_allclose(
            grads_sparse[name].numpy(), g.numpy(), rtol=1e-5, atol=1e-6 * np.abs(g.numpy()).max()
        )


@pytest.mark.parametrize("jit_compile, implementation", [(True, "compiled"), (False, "compiled"), (True, "auto")])
def test_masked_steps_and_both_loop_layouts_equal_dense_block(rng, jit_compile, implementation):
    """The XLA loop runs batch-major, the plain one time-major (spikes transposed in and out;
    a self-recurrent layer's loop with the C++ ops is plain): all give the dense block's
    spikes and gradients, with padded steps masked, and report `last_dropped` as [batch, time]."""
    x = raster(rng)
    mask = tf.constant(np.arange(T)[None, :] < np.array([[T], [T - 3], [4]]))
    dense, _ = pair(True)
    sparse = SparseSNNDense(
        N,
        input_dim=F,
        capacity=N,
        neuron=ds.NEURON_MODELS["lif"](N, threshold=0.3),
        self_recurrent=True,
        jit_compile=jit_compile,
        implementation=implementation,
    )
    dense(x)
    sparse(x)
    copy_weights(dense, sparse)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a = dense(x, mask=mask)
        b = to_dense(SparseSpikes(*sparse(x, mask=mask)), N)
        la, lb = weighted(a), weighted(b)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < a.numpy().sum() and not a.numpy()[2, 4:].any()  # padded steps emit nothing
    assert sparse.last_dropped.shape == (B, T)
    grads_dense = by_name(dense.trainable_weights, tape.gradient(la, dense.trainable_weights))
    grads_sparse = by_name(sparse.trainable_weights, tape.gradient(lb, sparse.trainable_weights))
    # a raster reaches the sparse layer as its events: the input gradient exists at events only
    grads_dense["x"] = tape.gradient(la, x) * tf.cast(x != 0, x.dtype)
    grads_sparse["x"] = tape.gradient(lb, x)
    assert set(grads_dense) == set(grads_sparse) == {"x", "kernel", "recurrent_kernel", "bias"}
    for name, g in grads_dense.items():
        # the input gradient sums N products in another order (dI @ W^T vs the op's per-entry
        # dot products): float32 round-off, relative to the largest entry, up to ~1e-5
        atol = (1e-5 if name == "x" else 1e-6) * np.abs(g.numpy()).max()
        np.testing.assert_allclose(grads_sparse[name].numpy(), g.numpy(), rtol=1e-5, atol=atol, err_msg=name)


@pytest.mark.parametrize("implementation", ["auto", "compiled"])
def test_long_sequence_is_checkpointed_and_equals_dense_block(rng, checkpoint_choices, implementation):
    """T = 300: the sparse layer's compiled loop keeps every 32nd state ("auto"), its kernel
    path none, and both give the spikes and gradients of a dense block that keeps every state."""
    x = raster(rng, (2, 300, F))
    dense, sparse = pair(False, implementation=implementation)
    dense.checkpoint_every = None
    dense(x[:, :2])
    sparse(x[:, :2])
    copy_weights(dense, sparse)
    del checkpoint_choices[:]
    with tf.GradientTape(persistent=True) as tape:
        a = dense(x)
        b = to_dense(SparseSpikes(*sparse(x)), N)
        la, lb = weighted(a), weighted(b)
    # the dense layer's choice (its LIF kernel then keeps no state at all), the sparse loop's
    # (the kernels' selecting recurrence keeps none and has no loop to checkpoint)
    in_kernels = implementation == "auto" and lif_ops.op_available()
    assert checkpoint_choices == ([None] if in_kernels else [None, 32])
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < a.numpy().sum() < a.numpy().size
    grads_dense = by_name(dense.trainable_weights, tape.gradient(la, dense.trainable_weights))
    grads_sparse = by_name(sparse.trainable_weights, tape.gradient(lb, sparse.trainable_weights))
    for name, g in grads_dense.items():
        np.testing.assert_allclose(
            grads_sparse[name].numpy(), g.numpy(), rtol=1e-5, atol=1e-6 * np.abs(g.numpy()).max(), err_msg=name
        )


def test_second_threshold_reaches_fewer_neurons_and_counts_dropped(rng):
    x = raster(rng, p=0.6)
    full, _ = pair(False)
    narrow = SparseSNNDense(N, input_dim=F, capacity=2, second_threshold=-0.1, neuron=ds.LIF(N, threshold=0.3))
    full(x)
    narrow(x)
    copy_weights(full, narrow)
    dense_spikes = full(x).numpy()
    ids, values, count = narrow(x)
    expected_dropped = np.maximum(dense_spikes.sum(-1) - 2, 0)
    np.testing.assert_array_equal(narrow.last_dropped.numpy(), expected_dropped)
    assert expected_dropped.sum() > 0
    assert np.all(values.numpy().sum(-1) == np.minimum(dense_spikes.sum(-1), 2))
    with tf.GradientTape() as tape:
        loss = weighted(to_dense(SparseSpikes(*narrow(x)), N))
    grad = tape.gradient(loss, narrow.synapse.kernel)
    assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)
    strict = SparseSNNDense(N, input_dim=F, capacity=1, neuron=ds.LIF(N, threshold=0.3), strict=True)
    strict.build()
    copy_weights(full, strict)
    with pytest.raises(ValueError, match="capacity=1"):
        strict(x)


@pytest.mark.parametrize("neuron", ["lif", "cuba_lif"])
@pytest.mark.parametrize("second_threshold", [None, -0.2])
def test_neuron_loop_in_the_kernels_equals_the_compiled_loop(rng, monkeypatch, neuron, second_threshold):
    """LIF and CuBa-LIF run in the selecting C++ kernels (the selection inside each step) under
    "auto": the spikes, the dropped count (capacity overflows here), the final states of a
    stateful layer and every gradient equal the compiled loop + `select_spikes`. A mask, a
    self-recurrence, a model outside the kernel table or "compiled" take the loop."""
    if not lif_ops.op_available():
        pytest.skip(f"C++ LIF kernels unavailable: {lif_ops.load_error()}")
    calls = []
    original = lif_ops.select_recurrence
    monkeypatch.setattr(lif_ops, "select_recurrence", lambda *a, **k: calls.append(1) or original(*a, **k))
    x = raster(rng, p=0.6)
    results = []
    for implementation in ("auto", "compiled"):
        layer = SparseSNNDense(
            N,
            input_dim=F,
            capacity=3,
            second_threshold=second_threshold,
            neuron=neuron,
            implementation=implementation,
            stateful=True,
            kernel_initializer=keras.initializers.RandomNormal(0.3, 0.5, seed=5),
        )
        layer.build((B, T, F))
        with tf.GradientTape() as tape:
            ids, values, count = layer(x)
            loss = weighted(to_dense(SparseSpikes(ids, values, count), N))
        grads = tape.gradient(loss, layer.trainable_weights)
        states = [v.numpy() for v in layer.state_variables]
        results.append([ids, values, count, layer.last_dropped] + states + grads)
    assert len(calls) == 1
    assert results[0][3].numpy().sum() > 0  # spikes did not fit
    for got, want in zip(results[0][:4], results[1][:4]):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for got, want in zip(results[0][4:], results[1][4:]):
        want = np.asarray(want)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6 * (np.abs(want).max() + 1))
    mask = tf.constant(np.arange(T)[None, :] < np.array([[T], [T], [4]]))
    for layer, call_kwargs in (
        (SparseSNNDense(N, input_dim=F, capacity=3, neuron=neuron), {"mask": mask}),
        (SparseSNNDense(N, input_dim=F, capacity=3, neuron=neuron, self_recurrent=True), {}),
        (SparseSNNDense(N, input_dim=F, capacity=3, neuron="alif"), {}),
    ):
        layer(x, **call_kwargs)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="LeakyIntegrator model does not spike"):  # in the table, but no spikes
        SparseSNNDense(N, input_dim=F, capacity=3, neuron="leaky_integrator")(x)


def test_fit_reports_dropped_metric_and_save_load(tmp_path, rng):
    inputs = keras.Input((T, F))
    ids, values, count = SparseSNNDense(N, input_dim=F, capacity=3, neuron=ds.LIF(N, threshold=0.3), name="sparse")(
        inputs
    )
    model = keras.Model(inputs, [ids, values, count])
    x = raster(rng, (8, T, F)).numpy()
    first = model(x)
    path = str(tmp_path / "sparse.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(first, loaded(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_in_a_trained_model_with_dropped_metric(rng):
    inputs = keras.Input((T, F))
    spikes = SparseSNNDense(N, input_dim=F, capacity=3, neuron=ds.LIF(N, threshold=0.3), name="sparse")(inputs)
    model = keras.Model(inputs, ds.LeakyReadout(2)(SparseToDense(N)(spikes)))
    model.compile("adam", ds.MaxOverTimeCrossEntropy(), **compile_kwargs())
    history = model.fit(raster(rng, (8, T, F)).numpy(), rng.integers(0, 2, 8), epochs=2, batch_size=4, verbose=0)
    assert "sparse_dropped" in history.history
    assert all(v >= 0 for v in history.history["sparse_dropped"])


def test_pure_tf_path_under_xla(rng):
    x = raster(rng)
    layer = SparseSNNDense(N, input_dim=F, capacity=4, neuron=ds.LIF(N, threshold=0.3), implementation="compiled")
    eager = layer(x)
    compiled = tf.function(lambda v: layer(v), jit_compile=True)(x)
    for a, b in zip(eager, compiled):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_config_round_trip_and_errors():
    layer = SparseSNNDense(N, input_dim=F, capacity=4, second_threshold=-0.2, neuron=ds.ALIF(N), self_recurrent=True)
    clone = SparseSNNDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="capacity"):
        SparseSNNDense(N, input_dim=F, capacity=0)
    with pytest.raises(ValueError, match="second_threshold"):
        SparseSNNDense(N, input_dim=F, capacity=2, second_threshold=0.3)
    with pytest.raises(ValueError, match="input_dim"):
        SparseSNNDense(N, input_dim=F, capacity=2)(tf.zeros([2, 4, F + 1]))


def op_types(fn, *args):
    """The op types of the traced forward graph of `fn`, nested functions included."""
    graph_def = tf.function(fn).get_concrete_function(*args).graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_implementation_tf_uses_no_custom_op(rng):
    """implementation="compiled" reaches every conversion, selection and scatter: the graphs (and so
    a SavedModel) contain no op of the C++ library."""
    import sparse_snns
    from sparse_snns import SparseSNNBlock, pack_spikes

    x = raster(rng)
    dense_in = SparseSNNDense(N, input_dim=F, capacity=4, implementation="compiled", jit_compile=False)
    to_dense_layer = SparseToDense(F, implementation="compiled")
    spikes = from_dense(x, F)
    cell = keras.layers.RNN(
        SparseSNNBlock(N, input_dim=F, capacity=4, input_capacity=F, implementation="compiled"), return_sequences=True
    )
    packed = pack_spikes(spikes)
    graphs = {
        "dense raster": op_types(lambda v: dense_in(v), x),
        "SparseToDense": op_types(lambda s: to_dense_layer(s), list(spikes)),
        "SparseSNNBlock": op_types(lambda p: cell(p), packed),
    }
    for name, types in graphs.items():
        assert not [t for t in types if t.startswith("DenseSnns")], name
    if sparse_snns.ops.op_available():  # the same graphs under "auto" do use the library
        auto = SparseToDense(F)
        assert any(t.startswith("DenseSnns") for t in op_types(lambda s: auto(s), list(spikes)))
    assert SparseToDense.from_config(to_dense_layer.get_config()).implementation == "compiled"
    np.testing.assert_array_equal(to_dense_layer(list(spikes)).numpy(), x.numpy())
    with pytest.raises(ValueError, match="implementation"):
        SparseToDense(F, implementation="fast")


@needs_compile_jit
def test_invalid_input_spikes_under_xla_are_reported_as_a_metric(rng):
    """A model compiled with XLA: an input id out of range is counted in `<name>_invalid`."""
    ids = np.zeros((8, 5, 3), np.int32)
    ids[..., 0] = 1
    ids[0, 2, 1] = F + 4  # out of range
    values = np.ones((8, 5, 3), np.float32)
    count = np.full((8, 5), 2, np.int32)
    inputs = [keras.Input((5, 3), dtype="int32"), keras.Input((5, 3)), keras.Input((5,), dtype="int32")]
    layer = SparseSNNDense(N, input_dim=F, capacity=N, name="hidden")
    logits = ds.LeakyReadout(2)(SparseToDense(N)(layer(inputs)))
    model = keras.Model(inputs, logits)
    model.compile("adam", ds.MaxOverTimeCrossEntropy(), jit_compile=True)
    logs = model.fit([ids, values, count], np.zeros(8, np.int32), epochs=1, batch_size=8, verbose=0).history
    assert logs["hidden_invalid"][0] == pytest.approx(1 / (8 * 5))  # one entry per call of 8 x 5 vectors
