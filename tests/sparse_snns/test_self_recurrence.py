"""Self-recurrent SparseSNNDense: the selection of each step is fed back through a sparse
product, as keras.layers.RNN(SparseSNNBlock) does, also when spikes do not fit."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras
from dense_snns.ops import lif as lif_ops
from sparse_snns import SparseSpikes, blocks, from_dense, to_dense
from sparse_snns.blocks import SparseSNNBlock, SparseSNNDense, pack_spikes, unpack_spikes

B, T, F, N, K = 3, 12, 9, 7, 3


def raster(rng, shape=(B, T, F), p=0.5):
    return tf.constant((rng.random(shape) < p).astype(np.float32))


def layers(second_threshold=None, capacity=K, threshold=0.3, **kwargs):
    """A self-recurrent SparseSNNDense and the RNN of the equal SparseSNNBlock, same weights."""
    common = dict(
        capacity=capacity,
        second_threshold=second_threshold,
        self_recurrent=True,
        kernel_initializer=keras.initializers.RandomNormal(0.2, 0.5, seed=3),
        recurrent_initializer=keras.initializers.RandomNormal(0.1, 0.6, seed=4),
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.2, seed=5),
    )
    fused_layer = SparseSNNDense(N, input_dim=F, neuron=ds.LIF(N, threshold=threshold), **common, **kwargs)
    cell = SparseSNNBlock(N, input_dim=F, input_capacity=F, neuron=ds.LIF(N, threshold=threshold), **common)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    fused_layer.build()
    rnn.build((None, None, 2 * F + 1))
    cell.synapse.kernel.assign(fused_layer.synapse.kernel)
    cell.synapse.bias.assign(fused_layer.synapse.bias)
    cell.recurrent.kernel.assign(fused_layer.recurrent_kernel)
    return fused_layer, rnn


@pytest.mark.parametrize(
    "second_threshold, kwargs",
    [
        (None, {}),  # the C++ ops in a plain loop where they are built, else XLA
        (-0.2, {}),
        (None, {"implementation": "compiled"}),  # pure TensorFlow in an XLA loop
        (-0.2, {"implementation": "compiled", "jit_compile": False}),
        (None, {"implementation": "reference"}),
    ],
)
def test_equals_the_rnn_of_sparse_cells_when_spikes_overflow(rng, second_threshold, kwargs):
    x = raster(rng)
    layer, rnn = layers(second_threshold, **kwargs)
    spikes = from_dense(x, F)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(spikes.values)
        ids, values, count = layer(list(spikes))
        packed = rnn(pack_spikes(spikes))
        expected = unpack_spikes(packed, K)
        weights = np.linspace(0.5, 1.5, N).astype(np.float32)
        la = tf.reduce_sum(to_dense(SparseSpikes(ids, values, count), N) * weights)
        lb = tf.reduce_sum(to_dense(expected, N) * weights)
    for got, want in zip((ids, values, count), expected):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert layer.last_dropped.numpy().sum() > 0  # spikes did not fit: the fed-back selection matters
    cell = rnn.cell
    pairs = [
        (layer.synapse.kernel, cell.synapse.kernel),
        (layer.synapse.bias, cell.synapse.bias),
        (layer.recurrent_kernel, cell.recurrent.kernel),
        (spikes.values, spikes.values),
    ]
    for mine, theirs in pairs:
        g, h = tape.gradient(la, mine).numpy(), tape.gradient(lb, theirs).numpy()
        assert np.abs(h).max() > 0
        np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-6 * np.abs(h).max())
    # The recurrent gradient reaches the rows of the spikes fed back (selected, value 1, before
    # the last step) and no other: a spike that did not fit was not fed back.
    fed_back = np.zeros(N, bool)
    selected_ids, selected_values = ids.numpy()[:, :-1], values.numpy()[:, :-1]
    fed_back[selected_ids[selected_values != 0]] = True
    rows = np.abs(tape.gradient(la, layer.recurrent_kernel).numpy()).sum(-1) > 0
    np.testing.assert_array_equal(rows, fed_back)


def test_kernel_and_compiled_loops_agree(rng, monkeypatch):
    """The C++ ops (in a plain loop) and pure TensorFlow (in an XLA loop) give the same
    selections, dropped counts and gradients."""
    if not lif_ops.op_available():
        pytest.skip(f"C++ ops unavailable: {lif_ops.load_error()}")
    traced = []
    original = blocks.select_spikes
    monkeypatch.setattr(
        blocks, "select_spikes", lambda *a, **k: traced.append(k["implementation"]) or original(*a, **k)
    )
    x = raster(rng)
    results = []
    # a capacity and threshold of this test only: its loops are traced here (see fused.shared_step)
    for kwargs in ({"implementation": "kernel"}, {"implementation": "compiled"}):
        layer, _ = layers(capacity=2, threshold=0.31, **kwargs)
        with tf.GradientTape() as tape:
            out = layer(x)
            loss = tf.reduce_sum(to_dense(SparseSpikes(*out), N) * np.linspace(0.5, 1.5, N).astype(np.float32))
        results.append((out, layer.last_dropped, tape.gradient(loss, layer.trainable_weights)))
    assert set(traced) == {"kernel", "compiled"}
    assert int(tf.reduce_sum(results[0][1])) > 0  # spikes did not fit
    (a, dropped_a, grads_a), (b, dropped_b, grads_b) = results
    for got, want in zip(list(a) + [dropped_a], list(b) + [dropped_b]):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    for g, h in zip(grads_a, grads_b):
        np.testing.assert_allclose(g.numpy(), h.numpy(), rtol=1e-5, atol=1e-6 * np.abs(h.numpy()).max())


@pytest.mark.parametrize("implementation", ["auto", "compiled"])
def test_masked_steps_keep_the_states_and_the_fed_back_selection(rng, implementation):
    """A sequence with masked steps in the middle equals the sequence without them."""
    x = raster(rng, (1, T, F))
    keep = np.ones(T, bool)
    keep[4:7] = False
    layer, _ = layers(implementation=implementation)
    masked = layer(x, mask=tf.constant(keep[None]))
    compressed = layer(tf.boolean_mask(x, keep, axis=1))
    for got, want in zip(masked, compressed):
        np.testing.assert_array_equal(got.numpy()[:, keep], want.numpy())
    assert not masked[1].numpy()[:, ~keep].any()  # masked steps emit nothing
    # spikes before the gap are fed back after it, and the steps after it spike
    assert masked[1].numpy()[:, 3].any() and masked[1].numpy()[:, 7:].any()


def test_long_sequence_is_checkpointed_and_equals_the_cells(rng, checkpoint_choices):
    """T = 300 in the XLA loop: every 32nd state kept ("auto"), the rest recomputed in the
    backward pass, with the results of the RNN of cells."""
    x = raster(rng, (2, 300, F))
    layer, rnn = layers(implementation="compiled")
    spikes = from_dense(x, F)
    with tf.GradientTape(persistent=True) as tape:
        out = layer(list(spikes))
        expected = unpack_spikes(rnn(pack_spikes(spikes)), K)
        weights = np.linspace(0.5, 1.5, N).astype(np.float32)
        la = tf.reduce_sum(to_dense(SparseSpikes(*out), N) * weights)
        lb = tf.reduce_sum(to_dense(expected, N) * weights)
    assert 32 in checkpoint_choices
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    for mine, theirs in (
        (layer.recurrent_kernel, rnn.cell.recurrent.kernel),
        (layer.synapse.kernel, rnn.cell.synapse.kernel),
    ):
        g, h = tape.gradient(la, mine).numpy(), tape.gradient(lb, theirs).numpy()
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-5 * np.abs(h).max())


def test_mixed_precision_trains(rng):
    x = raster(rng)
    layer = SparseSNNDense(
        N, input_dim=F, capacity=K, neuron=ds.LIF(N, threshold=0.3), self_recurrent=True, dtype="mixed_float16"
    )
    with tf.GradientTape() as tape:
        ids, values, count = layer(x)
        loss = tf.reduce_sum(tf.cast(values, tf.float32))
    assert values.dtype == tf.float16 and int(tf.reduce_sum(count)) > 0
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads) and np.abs(grads[0].numpy()).max() > 0


def test_stateful_halves_equal_the_whole_and_carry_the_packed_selection(rng):
    x = raster(rng)
    whole, _ = layers()
    halves = SparseSNNDense.from_config(dict(whole.get_config(), stateful=True, name="halves"))
    halves.build((B, T, F))
    for mine, theirs in zip(halves.trainable_weights, whole.trainable_weights):
        mine.assign(theirs)
    assert [tuple(v.shape) for v in halves.state_variables] == [(B, N), (B, 2 * K + 1)]
    expected = whole(x)
    first, second = halves(x[:, : T // 2]), halves(x[:, T // 2 :])
    for part in range(3):
        got = np.concatenate([first[part].numpy(), second[part].numpy()], axis=1)
        np.testing.assert_array_equal(got, expected[part].numpy())
    final = unpack_spikes(tf.constant(halves.get_states()[-1]), K)
    for got, want in zip(final, (expected[0][:, -1], expected[1][:, -1], expected[2][:, -1])):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_half_precision_refuses_ids_it_cannot_hold():
    layer = SparseSNNDense(3000, input_dim=4, capacity=8, self_recurrent=True, dtype="mixed_float16")
    with pytest.raises(ValueError, match=r"SparseSNNDense .*: packed sparse spikes of 3000 neurons .*2048 in float16"):
        layer(tf.zeros([1, 2, 4]))
    plain = SparseSNNDense(3000, input_dim=4, capacity=8, neuron="lif", dtype="mixed_float16")
    plain(tf.zeros([1, 2, 4]))  # nothing fed back: any size
    # its per-step form (streaming) keeps the ids as integers too: units 2990.. spike
    plain.synapse.bias.assign(np.where(np.arange(3000) >= 2990, 2.0, -1.0).astype(np.float32))
    (ids, values, count), _ = plain.step(tf.zeros([1, 4]), [tf.zeros([1, 3000], tf.float16)])
    np.testing.assert_array_equal(ids.numpy(), [np.arange(2990, 2998)])
    assert ids.dtype == tf.int32 and int(count[0]) == 8
