"""SparseLeakyReadout: equal to SparseToDense + LeakyReadout (outputs and gradients), serialises."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras
from sparse_snns import SparseLeakyReadout, SparseSpikes, SparseToDense, from_dense

B, T, N, K, U = 3, 7, 12, 5, 4


def spikes(rng):
    raster = rng.random((B, T, N)) < 0.3
    values = raster * rng.uniform(0.5, 1.5, (B, T, N))  # non-binary values check the weighting
    return list(from_dense(tf.constant(values.astype(np.float32)), K))


@pytest.mark.parametrize("product", ["sparse", "dense", "auto"])
@pytest.mark.parametrize("implementation", ["auto", "compiled"])
def test_equals_dense_readout_with_gradients(rng, product, implementation):
    inputs = spikes(rng)
    sparse = SparseLeakyReadout(
        U,
        input_dim=N,
        trainable_decay=True,
        product=product,
        implementation=implementation,
        bias_initializer="glorot_uniform",
    )
    dense = ds.LeakyReadout(U, trainable_decay=True)
    sparse(inputs)
    dense(tf.zeros([B, T, N]))
    dense.set_weights(sparse.get_weights())
    values = inputs[1]
    weights = tf.constant(rng.normal(size=(B, T, U)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(values)
        a = sparse([inputs[0], values, inputs[2]])
        b = dense(SparseToDense(N)([inputs[0], values, inputs[2]]))
        la, lb = tf.reduce_sum(a * weights), tf.reduce_sum(b * weights)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    for ga, gb in zip(
        tape.gradient(la, [values] + sparse.trainable_weights), tape.gradient(lb, [values] + dense.trainable_weights)
    ):
        np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-5, atol=1e-5)


def test_config_save_load_and_errors(tmp_path, rng):
    layer = SparseLeakyReadout(U, input_dim=N, beta=0.8, product="sparse", name="readout")
    clone = SparseLeakyReadout.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    ids = keras.Input((T, K), dtype="int32")
    values = keras.Input((T, K))
    count = keras.Input((T,), dtype="int32")
    model = keras.Model([ids, values, count], layer([ids, values, count]))
    inputs = [np.asarray(t) for t in spikes(rng)]
    first = np.asarray(model(inputs))
    assert first.shape == (B, T, U)
    path = str(tmp_path / "readout.keras")
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(inputs)), first, rtol=1e-6)
    with pytest.raises(ValueError, match="product"):
        SparseLeakyReadout(U, input_dim=N, product="fast")
    with pytest.raises(ValueError, match="input_dim"):
        SparseLeakyReadout(U, input_dim=0)
    with pytest.raises(ValueError, match="rank 3"):
        SparseLeakyReadout(U, input_dim=N)(SparseSpikes(*[t[0] for t in spikes(rng)]))


@pytest.mark.parametrize("product", ["sparse", "dense"])
@pytest.mark.parametrize("implementation", ["auto", "compiled"])
def test_inputs_checked_for_both_products(rng, product, implementation):
    layer = SparseLeakyReadout(U, input_dim=N, product=product, implementation=implementation)
    ids, values, count = spikes(rng)
    layer([ids, values, count])
    too_many = tf.tensor_scatter_nd_update(count, [[0, 0]], [K + 1])
    with pytest.raises(ValueError, match=r"`count` > K"):
        layer([ids, values, too_many])
    out_of_range = tf.tensor_scatter_nd_update(ids, [[0, 0, 0]], [N])
    with pytest.raises(ValueError, match="`ids` out of range"):
        layer([out_of_range, values, tf.maximum(count, 1)])
    with pytest.raises(TypeError, match="`ids` must be int32"):
        layer([tf.cast(ids, tf.int64), values, count])
    with pytest.raises(ValueError, match="`count` must have the shape"):
        layer([ids, values, count[..., None]])
    graph = tf.function(lambda c: layer([ids, values, c]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="count"):
        graph(too_many)


def test_auto_product_resolves_to_sparse_explicit_op_and_xla(rng):
    """K * 4 < input_dim: "auto" takes the sparse product; "kernel" and the XLA-compiled layer
    (pure-TF path) give the dense readout's result."""
    import sparse_snns

    wide = 40
    raster = np.zeros((B, T, wide))
    for b in range(B):
        for t in range(T):  # at most K events per step: nothing dropped
            raster[b, t, rng.choice(wide, rng.integers(0, K + 1), replace=False)] = rng.uniform(0.5, 1.5)
    inputs = list(from_dense(tf.constant(raster.astype(np.float32)), K))
    dense = ds.LeakyReadout(U, trainable_decay=True)
    dense(tf.zeros([B, T, wide]))
    reference = dense(tf.constant(raster.astype(np.float32)))
    implementations = ["auto", "compiled"] + (["kernel"] if sparse_snns.ops.op_available() else [])
    for implementation in implementations:
        layer = SparseLeakyReadout(U, input_dim=wide, trainable_decay=True, implementation=implementation)
        assert layer.resolved_product(K) == "sparse"
        layer(inputs)
        layer.set_weights(dense.get_weights())
        np.testing.assert_allclose(layer(inputs).numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
        if implementation != "kernel":
            compiled = tf.function(lambda i, v, c: layer([i, v, c]), jit_compile=True)(*inputs)
            np.testing.assert_allclose(compiled.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    assert SparseLeakyReadout(U, input_dim=wide).resolved_product(wide // 4) == "dense"
