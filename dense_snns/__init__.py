"""dense_snns: spiking neural networks in TensorFlow/Keras, the dense base package.

Neuron math lives in `dense_snns.neurons` (pure step functions) and `dense_snns.surrogates`
(spike functions); everything else wraps them.
"""

from __future__ import annotations

from . import fused, neurons, plotting, surrogates
from ._compat import KERAS_3, KERAS_VERSION, keras
from .cells import (
    ALIF,
    LIF,
    NEURON_MODELS,
    CubaLIF,
    LeakyReadoutCell,
    LIFNeuron,
    NeuronCell,
    SNNBlock,
    get_neuron,
)
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
from .readouts import LeakyReadout
from .stacking import apply_layers, single_rnn, stacked_rnn_layers
from .surrogates import SURROGATE_NAMES, Surrogate

__version__ = "0.1.0"

__all__ = [
    "ALIF",
    "CubaLIF",
    "FiringRateRegularizer",
    "KERAS_3",
    "KERAS_VERSION",
    "LIF",
    "LIFNeuron",
    "LeakyReadout",
    "LeakyReadoutCell",
    "MaxOverTimeCrossEntropy",
    "MeanOverTimeCrossEntropy",
    "NEURON_MODELS",
    "NeuronCell",
    "SNNBlock",
    "SNNConv1D",
    "SNNConv2D",
    "SNNDense",
    "SNNSequenceLayer",
    "SURROGATE_NAMES",
    "SpikeCountCrossEntropy",
    "SpikeMonitor",
    "Surrogate",
    "TimeReducedAccuracy",
    "TimeReducedCrossEntropy",
    "apply_layers",
    "fused",
    "firing_rates",
    "get_neuron",
    "keras",
    "neurons",
    "plotting",
    "reduce_over_time",
    "single_rnn",
    "stacked_rnn_layers",
    "surrogates",
]
