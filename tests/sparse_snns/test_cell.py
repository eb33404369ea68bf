"""SparseSNNBlock inside keras.layers.RNN: sparse outputs and sparse recurrent state."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras
from sparse_snns import SparseSpikes, from_dense, to_dense
from sparse_snns.blocks import SparseSNNBlock, check_packable, pack_spikes, unpack_spikes

from helpers import config_round_trip

B, T, F, N = 3, 9, 8, 6


@pytest.mark.parametrize("self_recurrent", [False, True])
def test_rnn_of_sparse_cells_equals_dense_block(rng, self_recurrent):
    x = tf.constant((rng.random((B, T, F)) < 0.4).astype(np.float32))
    dense = keras.layers.RNN(
        ds.SNNBlock(
            N,
            neuron=ds.ALIF(N, threshold=0.3),
            self_recurrent=self_recurrent,
            kernel_initializer=keras.initializers.RandomNormal(0.2, 0.5, seed=3),
        ),
        return_sequences=True,
    )
    cell = SparseSNNBlock(
        N, input_dim=F, capacity=N, input_capacity=F, neuron=ds.ALIF(N, threshold=0.3), self_recurrent=self_recurrent
    )
    sparse = keras.layers.RNN(cell, return_sequences=True)
    packed_x = pack_spikes(from_dense(x, F))
    dense(x)
    sparse(packed_x)
    weights = dense.get_weights()
    cell.synapse.set_weights([weights[0], weights[-1]])
    if self_recurrent:
        cell.recurrent.set_weights([weights[1]])
    with tf.GradientTape(persistent=True) as tape:
        a = dense(x)
        b = to_dense(unpack_spikes(sparse(packed_x), N), N)
        la = tf.reduce_sum(a * np.linspace(0.5, 1.5, N).astype(np.float32))
        lb = tf.reduce_sum(b * np.linspace(0.5, 1.5, N).astype(np.float32))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < a.numpy().sum() < a.numpy().size
    ga = tape.gradient(la, [dense.cell.kernel, dense.cell.bias])
    gb = tape.gradient(lb, [cell.synapse.kernel, cell.synapse.bias])
    for g, h in zip(ga, gb):
        np.testing.assert_allclose(h.numpy(), g.numpy(), rtol=1e-5, atol=1e-6 * np.abs(g.numpy()).max())
    if self_recurrent:
        g = tape.gradient(la, dense.cell.recurrent_kernel).numpy()
        h = tape.gradient(lb, cell.recurrent.kernel).numpy()
        np.testing.assert_allclose(h, g, rtol=1e-5, atol=1e-6 * np.abs(g).max())


def test_pack_round_trip_and_config():
    spikes = SparseSpikes(tf.constant([[3, 1, 0]]), tf.constant([[1.0, 0.0, 0.0]]), tf.constant([2]))
    back = unpack_spikes(pack_spikes(spikes), 3)
    for a, b in zip(back, spikes):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="2 \\* capacity \\+ 1"):
        unpack_spikes(tf.zeros([1, 6]), 3)
    cell = SparseSNNBlock(
        4, input_dim=5, capacity=2, input_capacity=3, second_threshold=-0.3, self_recurrent=True, neuron="lif"
    )
    config_round_trip(cell)
    assert cell.state_size == [4, 5] and cell.output_size == 5
    with pytest.raises(ValueError, match="input_capacity"):
        SparseSNNBlock(4, input_dim=5, capacity=2, input_capacity=0)


def test_half_precision_refuses_ids_it_cannot_hold():
    # packed spikes keep neuron ids as floats of the compute dtype: float16 holds them up to 2048
    wide_input = SparseSNNBlock(4, input_dim=3000, capacity=2, input_capacity=3, dtype="mixed_float16")
    rnn = keras.layers.RNN(wide_input)
    with pytest.raises(ValueError, match=r"SparseSNNBlock .*: the input: packed sparse spikes of 3000 neurons .*2048"):
        rnn(tf.zeros([1, 2, 7]))
    wide_output = SparseSNNBlock(300, input_dim=5, capacity=2, input_capacity=3, dtype="mixed_bfloat16")
    with pytest.raises(ValueError, match=r"the output: packed sparse spikes of 300 neurons .*256 in bfloat16"):
        keras.layers.RNN(wide_output)(tf.zeros([1, 2, 7]))
    check_packable(2048, tf.float16, "2048 neurons")  # the largest that float16 holds
    with pytest.raises(ValueError, match="2049 neurons: packed sparse spikes of 2049 neurons"):
        check_packable(2049, tf.float16, "2049 neurons")
    check_packable(2049, tf.float32, "float32")
