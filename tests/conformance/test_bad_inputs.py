"""Bad inputs never pass silently, for every sequence layer of the registry: a mask of another
shape, no time step, initial states of another shape, a stateful layer called with another
batch size; each is an error that names the layer, the argument and both shapes."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
import sparse_snns as sp
from dense_snns import keras

from registry import CASES, B, F, N, T

#: The layers that take sequences themselves (cells run inside keras.layers.RNN, which checks
#: its own inputs and masks; SpikeMonitor, SparseLinear and SparseToDense work on any leading
#: shape, an empty one included).
PER_VECTOR = ("spike_monitor", "sparse_linear", "sparse_to_dense")
SEQUENCE = [c for c in CASES if not isinstance(c.make("float32"), keras.layers.RNN) and c.name not in PER_VECTOR]
MASKED = [c for c in SEQUENCE if c.masks]


def built(case, rng):
    layer = case.make("float32")
    inputs = case.inputs(rng, "float32")
    layer(inputs)
    return layer, inputs


@pytest.mark.parametrize("case", MASKED, ids=[c.name for c in MASKED])
@pytest.mark.parametrize("shape", [(1, T), (B, T + 2), (B,), (B, T, 1)])
def test_a_mask_of_another_shape_is_refused(case, shape, rng):
    """Before, a [1, T] mask was applied to every sample and a longer one cut silently."""
    layer, inputs = built(case, rng)
    with pytest.raises(ValueError, match=rf"`mask` must have shape \[batch, time\] = \[{B}, {T}\].*got shape"):
        layer(inputs, mask=tf.ones(shape, tf.bool))


def test_a_mask_of_another_dynamic_shape_fails_when_it_runs(rng):
    layer = ds.SNNDense(N)
    x = tf.zeros([B, T, F])
    layer(x)
    run = tf.function(lambda x, mask: layer(x, mask=mask), input_signature=[
        tf.TensorSpec([None, None, F]), tf.TensorSpec([None, None], tf.bool)])  # fmt: skip
    with pytest.raises(tf.errors.InvalidArgumentError, match="`mask` must have shape"):
        run(x, tf.ones([1, T], tf.bool))


@pytest.mark.parametrize("case", SEQUENCE, ids=[c.name for c in SEQUENCE])
def test_no_time_step_is_refused(case, rng):
    layer, inputs = built(case, rng)
    empty = tf.nest.map_structure(lambda t: t[:, :0], inputs)
    with pytest.raises(ValueError, match="time dimension of 0"):
        layer(empty)


@pytest.mark.parametrize("implementation", ["compiled", "reference"])
def test_initial_states_of_another_shape_are_refused(implementation, rng):
    """Before, the reference path failed deep in TensorFlow ("Matrix size-incompatible")."""
    layer = ds.SNNDense(N, neuron="lif", implementation=implementation)
    x = tf.zeros([B, T, F])
    layer(x)
    with pytest.raises(
        ValueError, match=rf"`initial_state\[0\]` must have shape \[{B}, {N}\], got shape \({B}, {N + 1}\)"
    ):
        layer(x, initial_state=[tf.zeros([B, N + 1])])
    with pytest.raises(ValueError, match="`initial_state` must hold 1 tensors, got 2"):
        layer(x, initial_state=[tf.zeros([B, N])] * 2)


def test_a_stateful_layer_refuses_another_batch_size():
    layer = ds.SNNDense(N, stateful=True)
    model = keras.Sequential([keras.Input((T, F), batch_size=4), layer])
    model(tf.zeros([4, T, F]))
    message = rf"stateful with states of batch size 4 \(shape \(4, {N}\)\), got `inputs` of batch size 2 \(shape \(2, {T}, {F}\)\)"
    with pytest.raises(ValueError, match=message):
        layer(tf.zeros([2, T, F]))


@pytest.mark.parametrize(
    "make, name", [(lambda: ds.SNNConv2D(0, 3), "filters"), (lambda: sp.SparseToDense(0), "num_neurons")]
)
def test_messages_name_the_argument_as_the_user_wrote_it(make, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        make()


def test_a_placement_on_a_device_that_does_not_exist_is_refused():
    """Before, TensorFlow ran such a node on the CPU without a word."""
    from snns_as_gnn import GraphSNN, chain

    with pytest.raises(ValueError, match="placement of node 'node0': device '/GPU:7' does not exist; the devices are"):
        GraphSNN(chain([3, 2]), placement={"node0": "/GPU:7", "node1": "/CPU:0"})
    GraphSNN(chain([3, 2]), placement={"node0": "/job:worker/task:0/device:CPU:0", "node1": "/CPU:0"})  # a cluster's


def test_numpy_numbers_are_numbers():
    """NumPy scalars, 0-d arrays and per-neuron arrays are taken wherever a number is."""
    assert ds.LIF(4, beta=np.float32(0.5), threshold=np.array(0.7)).get_config()["threshold"] == pytest.approx(0.7)
    assert ds.LIF(3, beta=np.array([0.5, 0.6, 0.7])).get_config()["beta"] == pytest.approx([0.5, 0.6, 0.7])
    assert sp.SparseSNNDense(4, input_dim=np.int64(5), capacity=np.int64(4)).capacity == 4
    assert ds.Surrogate("arctan", np.float32(2.0)).scale == 2.0
    assert ds.SNNDense(np.int32(3)).units == 3
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            ds.LIF(3, threshold=bad)
        with pytest.raises(ValueError, match="beta must be in the open interval"):
            ds.LIF(3, beta=bad)
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            ds.Surrogate("arctan", bad)


def test_one_nan_in_the_training_data_stops_training_with_terminate_on_nan(rng):
    """The reproducer: a NaN in one sample used to turn the SNN weights into NaN while the
    loss settled at ln 2 and TerminateOnNaN never fired."""
    x = rng.random((32, 10, 3)).astype(np.float32)
    x[3, 4, 1] = np.nan
    y = rng.integers(0, 2, 32)
    inputs = keras.Input((10, 3))
    model = keras.Model(inputs, ds.LeakyReadout(2)(ds.SNNDense(6, neuron="lif")(inputs)))
    model.compile("adam", ds.MaxOverTimeCrossEntropy(), **({"jit_compile": False} if ds.KERAS_3 else {}))
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])


FEATURED = [
    c for c in SEQUENCE if c.name not in ("sparse_snn_dense", "sparse_snn_dense_kernel", "sparse_leaky_readout")
]


@pytest.mark.parametrize("case", FEATURED, ids=[c.name for c in FEATURED])
def test_inputs_of_another_feature_width_are_refused(case, rng):
    """Before, LeakyReadout failed deep in TensorFlow ("Matrix size-incompatible")."""
    layer, inputs = built(case, rng)
    wider = tf.concat([inputs, inputs[..., :1]], axis=-1)
    with pytest.raises(ValueError, match=r"`inputs` of shape .* have features .*, but .* has"):
        layer(wider)
