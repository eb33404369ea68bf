"""The two compositions of cells (dense_snns.stacking): several RNN layers, or several cells
in one RNN, give the same spikes for the same weights, with every neuron model."""

import numpy as np
import pytest

import dense_snns as ds
from dense_snns import keras, neurons

from helpers import spike_raster

SPIKING = [name for name, model in neurons.MODELS.items() if model.spiking]


def blocks(name):
    def neuron(units):
        lowered = {p.name: 0.3 for p in neurons.get(name).params if p.kind == "threshold"}
        return ds.get_neuron({"class_name": name, "config": lowered}, units)

    init = keras.initializers.RandomNormal(0.3, 0.6, seed=3)
    return [
        ds.SNNBlock(7, neuron=neuron(7), self_recurrent=True, kernel_initializer=init),
        ds.SNNBlock(5, neuron=neuron(5), kernel_initializer=init),
    ]


@pytest.mark.parametrize("name", SPIKING)
def test_two_compositions_give_the_same_spikes(rng, name):
    x = spike_raster(rng, (3, 12, 6), p=0.4)
    first, second = blocks(name), blocks(name)
    layered = ds.apply_layers(ds.stacked_rnn_layers(first), x)
    single = ds.single_rnn(second)
    single(x)
    for a, b in zip(first, second):
        b.set_weights(a.get_weights())
    np.testing.assert_array_equal(layered.numpy(), single(x).numpy())
    assert layered.numpy().sum() > 0


def test_return_sequences_and_rnn_arguments():
    layers = ds.stacked_rnn_layers(blocks("lif"), return_sequences=False, unroll=True)
    assert [layer.return_sequences for layer in layers] == [True, False]
    assert all(layer.unroll for layer in layers)
    assert ds.single_rnn(blocks("lif"), return_sequences=False).return_sequences is False


@pytest.mark.parametrize("compose", [ds.stacked_rnn_layers, ds.single_rnn])
def test_no_cells_is_an_error(compose):
    with pytest.raises(ValueError, match="cells must contain at least one RNN cell"):
        compose([])
