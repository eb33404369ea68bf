"""Keras RNN cells: neuron models (current in, spikes out) and the SNN block.

Cells are thin wrappers around the pure models of `dense_snns.neurons`: they own weights,
configuration and shapes, never neuron math. There is one neuron cell class per registered
model (`LIF`, `ALIF`, ..., made by `cell_class` from the model's declaration), the
`SNNBlock` (dense synapses + a neuron) and the `LeakyReadoutCell`. Each follows the Keras
RNN-cell contract (`state_size`, `output_size`, `get_initial_state`, `call(inputs,
states)`), so it runs inside `keras.layers.RNN`, alone or stacked, under Keras 2 and 3.
"""

from __future__ import annotations

from .block import LeakyReadoutCell, SNNBlock
from .neuron import (
    DEFAULT_NEURON,
    NEURON_MODELS,
    NeuronCell,
    cell_class,
    get_neuron,
    register_neuron_model,
    serialize_neuron,
    zero_states,
)

#: The names of the neuron cell classes, one per model (each a module attribute: cells.LIF, ...).
MODEL_CELLS = sorted({cls.__name__ for cls in NEURON_MODELS.values()})
globals().update({name: NEURON_MODELS[name] for name in MODEL_CELLS})

__all__ = [
    "DEFAULT_NEURON",
    "LeakyReadoutCell",
    "MODEL_CELLS",
    "NEURON_MODELS",
    "NeuronCell",
    "SNNBlock",
    "cell_class",
    "get_neuron",
    "register_neuron_model",
    "serialize_neuron",
    "zero_states",
] + MODEL_CELLS
