"""TensorBoard views of spikes: a Keras callback that logs, per epoch and spiking layer, the
firing-rate histogram, the fractions of silent and saturated neurons, the spikes a sparse
layer dropped, and a spike-raster image of one fixed sample.

    model.fit(train, epochs=10, callbacks=[
        keras.callbacks.TensorBoard(log_dir),          # losses, metrics, weights
        SpikeTensorBoard(log_dir, sample=x_fixed),     # spikes
    ])

then ``tensorboard --logdir log_dir``. Tags, with the layer's name: ``<layer>/firing_rate``
(histogram of spikes per neuron per step over the sample batch), ``<layer>/silent_fraction``
and ``<layer>/saturated_fraction`` (neurons that never fire; that fire in at least
`saturated` of the steps), ``<layer>/dropped`` (sparse layers: the epoch's mean of spikes per
sample and step that did not fit the capacity), ``<layer>/raster`` (image: neurons down,
time steps across, white where the first sample spikes).
"""

from __future__ import annotations

import os
from typing import List

import numpy as np
import tensorflow as tf

from .compat import is_functional, keras

__all__ = ["SpikeTensorBoard", "layer_outputs_model", "spikes_as_dense", "spiking_layers"]


def _is_spiking(layer) -> bool:
    for owner in (layer, getattr(layer, "cell", None)):
        model = getattr(getattr(owner, "neuron", None), "model", None)
        if model is not None and getattr(model, "spiking", False):
            return True
    return type(layer).__name__ == "GraphSNN"  # its output nodes' spikes


def spiking_layers(model) -> List:
    """The layers of `model` whose outputs are spikes (fused, RNN, sparse and graph layers;
    not readouts), in order."""
    return [layer for layer in model.layers if _is_spiking(layer)]


def layer_outputs_model(model, layers):
    """A model from `model`'s inputs to the outputs of `layers`, as a dict {"0": ..., "1":
    ...} (a dict keeps a sparse layer's [ids, values, count] whole in Keras 2 and 3)."""
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    return keras.Model(inputs, {str(i): layer.output for i, layer in enumerate(layers)})


def _units(layer, output) -> int:
    units = getattr(layer, "units", None)
    if isinstance(units, (list, tuple)):  # a graph: its output nodes, concatenated
        return int(output.shape[-1])
    return int(units)


def spikes_as_dense(layer, output) -> np.ndarray:
    """A layer's output as spikes [batch, time, neurons] (sparse [ids, values, count]
    scattered; conv maps flattened)."""
    if isinstance(output, (list, tuple)):
        ids, values, count = (np.asarray(t) for t in output)
        batch, steps, capacity = ids.shape
        dense = np.zeros((batch, steps, _units(layer, ids)), np.float32)
        valid = np.arange(capacity)[None, None, :] < count[..., None]
        b, t, k = np.nonzero(valid)
        np.add.at(dense, (b, t, ids[b, t, k]), values[b, t, k])
        return dense
    output = np.asarray(output, np.float32)
    return output.reshape(output.shape[0], output.shape[1], -1)


class SpikeTensorBoard(keras.callbacks.Callback):
    """Log spike statistics of every spiking layer to TensorBoard at the end of epochs.

    Args:
        log_dir: TensorBoard log directory (the events go to ``<log_dir>/spikes``).
        sample: a fixed input batch [batch, time, ...] (or a list for several inputs): the
            statistics are of the model's spikes on it, the raster of its first sample.
        every: log every `every` epochs.
        saturated: the firing rate (spikes per step) from which a neuron counts as saturated.
        max_neurons: rows of a raster image (the first neurons of the layer).
    """

    def __init__(self, log_dir, sample, every: int = 1, saturated: float = 0.9, max_neurons: int = 512):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
            raise ValueError(f"`every` must be a positive integer of epochs, got every={every!r}")
        if not 0.0 < saturated <= 1.0:
            raise ValueError(f"`saturated` must be in (0, 1], got saturated={saturated!r}")
        self.log_dir = os.fspath(log_dir)
        self.sample = sample
        self.every = every
        self.saturated = float(saturated)
        self.max_neurons = int(max_neurons)
        self._writer = None
        self._probe = None
        self._layers: List = []

    def _setup(self) -> None:
        if not is_functional(self.model):
            raise ValueError(
                "SpikeTensorBoard reads the outputs of the model's layers: it needs a functional or "
                f"Sequential model, got {type(self.model).__name__}"
            )
        self._layers = spiking_layers(self.model)
        if not self._layers:
            raise ValueError(f"model {self.model.name!r} has no spiking layer to log")
        self._probe = layer_outputs_model(self.model, self._layers)
        self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "spikes"))

    def on_train_begin(self, logs=None):
        if self._probe is None:
            self._setup()

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every:
            return
        outputs = self._probe(self.sample, training=False)
        with self._writer.as_default(step=epoch):
            for i, layer in enumerate(self._layers):
                output = outputs[str(i)]
                self._log_layer(layer, output, logs or {})
        self._writer.flush()

    def _log_layer(self, layer, output, logs) -> None:
        spikes = spikes_as_dense(layer, output)
        rates = spikes.mean(axis=(0, 1))
        name = layer.name
        tf.summary.histogram(f"{name}/firing_rate", rates)
        tf.summary.scalar(f"{name}/silent_fraction", float(np.mean(rates == 0)))
        tf.summary.scalar(f"{name}/saturated_fraction", float(np.mean(rates >= self.saturated)))
        metric = getattr(layer, "metric_name", None)
        if metric is not None and metric.endswith("_dropped") and metric in logs:
            tf.summary.scalar(f"{name}/dropped", float(logs[metric]))
        raster = np.clip(spikes[0, :, : self.max_neurons].T, 0.0, 1.0)  # [neurons, time]
        tf.summary.image(f"{name}/raster", raster[None, :, :, None], max_outputs=1)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._probe = None
