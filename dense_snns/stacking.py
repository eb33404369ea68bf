"""The two compositions of cells into a multi-layer SNN.

1. `stacked_rnn_layers`: one `keras.layers.RNN(cell, return_sequences=True)` per cell.
2. `single_rnn`: all cells in one `keras.layers.RNN` (Keras stacks them per step).

Both give the same spikes for the same weights: at step t the cell k sees the output of
cell k-1 at the same step t.
"""

from __future__ import annotations

from typing import List, Sequence

from .compat import keras


def stacked_rnn_layers(cells: Sequence, return_sequences: bool = True, **rnn_kwargs) -> List:
    """One `keras.layers.RNN` per cell; all but the last return sequences.

    Args:
        cells: RNN cells (e.g. `SNNBlock`s, a `LeakyReadoutCell` last).
        return_sequences: whether the last layer returns the whole sequence.
        **rnn_kwargs: passed to every `keras.layers.RNN` (e.g. ``stateful=True``).
    Returns: the list of RNN layers, to be applied in order.
    """
    cells = list(cells)
    if not cells:
        raise ValueError("cells must contain at least one RNN cell, got an empty sequence")
    return [
        keras.layers.RNN(cell, return_sequences=return_sequences if i == len(cells) - 1 else True, **rnn_kwargs)
        for i, cell in enumerate(cells)
    ]


def single_rnn(cells: Sequence, return_sequences: bool = True, **rnn_kwargs):
    """All cells stacked inside one `keras.layers.RNN`; outputs the last cell's output."""
    cells = list(cells)
    if not cells:
        raise ValueError("cells must contain at least one RNN cell, got an empty sequence")
    return keras.layers.RNN(cells, return_sequences=return_sequences, **rnn_kwargs)


def apply_layers(layers: Sequence, inputs):
    """Apply layers in order: ``apply_layers(stacked_rnn_layers(cells), x)``."""
    for layer in layers:
        inputs = layer(inputs)
    return inputs
