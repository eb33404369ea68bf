"""dense_snns: spiking neural networks in TensorFlow/Keras, the dense base package.

Neuron models are declared once in `dense_snns.neurons` (states, parameters, a pure update
function) and spike functions in `dense_snns.surrogates`; the cells, layers and other
packages are made from them. The C++ kernels of `dense_snns.ops` are a second
implementation of the models in their kernel table, tested against the Python ones.
"""

from __future__ import annotations

from . import cells, eprop, fused, implementation, neurons, plotting, streaming, surrogates, tensorboard
from .cells import *  # noqa: F403 - one class per neuron model: LIF, ALIF, CubaLIF, LIFNeuron, ...
from .cells import (
    DEFAULT_NEURON,
    NEURON_MODELS,
    LeakyReadoutCell,
    NeuronCell,
    SNNBlock,
    cell_class,
    get_neuron,
    register_neuron_model,
)
from .compat import KERAS_3, KERAS_VERSION, custom_objects, keras
from .eprop import EProp
from .implementation import IMPLEMENTATIONS, ImplementationError
from .layers import SNNConv1D, SNNConv2D, SNNDense, SNNSequenceLayer
from .losses import (
    MaxOverTimeCrossEntropy,
    MeanOverTimeCrossEntropy,
    SpikeCountCrossEntropy,
    TimeReducedAccuracy,
    TimeReducedCrossEntropy,
    reduce_over_time,
)
from .monitors import FiringRateRegularizer, SpikeMonitor, firing_rates
from .neurons import NeuronModel
from .readouts import LeakyReadout
from .stacking import apply_layers, single_rnn, stacked_rnn_layers
from .streaming import run_stream, stateful_copy
from .surrogates import SURROGATE_NAMES, Surrogate
from .tensorboard import SpikeTensorBoard

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_NEURON",
    "EProp",
    "FiringRateRegularizer",
    "IMPLEMENTATIONS",
    "ImplementationError",
    "KERAS_3",
    "KERAS_VERSION",
    "LeakyReadout",
    "LeakyReadoutCell",
    "MaxOverTimeCrossEntropy",
    "MeanOverTimeCrossEntropy",
    "NEURON_MODELS",
    "NeuronCell",
    "NeuronModel",
    "SNNBlock",
    "SNNConv1D",
    "SNNConv2D",
    "SNNDense",
    "SNNSequenceLayer",
    "SURROGATE_NAMES",
    "SpikeCountCrossEntropy",
    "SpikeMonitor",
    "SpikeTensorBoard",
    "Surrogate",
    "TimeReducedAccuracy",
    "TimeReducedCrossEntropy",
    "apply_layers",
    "cell_class",
    "cells",
    "custom_objects",
    "eprop",
    "firing_rates",
    "fused",
    "get_neuron",
    "implementation",
    "keras",
    "neurons",
    "plotting",
    "reduce_over_time",
    "register_neuron_model",
    "run_stream",
    "single_rnn",
    "stacked_rnn_layers",
    "stateful_copy",
    "streaming",
    "surrogates",
    "tensorboard",
]
# The neuron cell classes, one per registered model.
__all__ += cells.MODEL_CELLS
