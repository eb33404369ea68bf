"""Sequence-level readout: a non-spiking leaky integrator over [batch, time, features]."""

from __future__ import annotations

from typing import Union

from .cells import LeakyReadoutCell
from .compat import register
from .layers import DenseSequenceLayer

#: The constructor arguments of `LeakyReadout` that live in its cell's config.
CELL_CONFIG_KEYS = LeakyReadoutCell.ARGUMENTS


@register()
class LeakyReadout(DenseSequenceLayer):
    """Leaky-integrator readout over a whole sequence: `LeakyReadoutCell` as a fused layer.

        V[t] = beta V[t-1] + x[t] W (+ b) ;  output V[t]

    The projection of all steps is one matmul; only the linear leak runs over time, in the
    C++ leaky-integrator kernel or in the compiled loops of `dense_snns.fused`, as for
    `SNNDense` (same `implementation` values, same options). Weights: ``layer.cell``'s
    (kernel, bias, the trained beta), so `set_weights(get_weights())` moves them between
    this layer and ``keras.layers.RNN(LeakyReadoutCell(...))``.

    Args: those of `LeakyReadoutCell` (units, beta, use_bias, kernel_initializer,
    bias_initializer, trainable_params, or trainable_decay), and `implementation`, `input_sparsity`,
    `return_sequences` (default True), `return_state`, `stateful`, `jit_compile`,
    `checkpoint_every` as `SNNDense`.

    Input: spikes [batch, time, features]. Output: membrane [batch, time, units], to be
    reduced over time by the losses of `dense_snns.losses` (max, mean). A mask (padded steps
    keep the state and output 0) is consumed, not passed on.
    """

    CELL_ARGUMENTS = CELL_CONFIG_KEYS

    def __init__(
        self,
        units: int,
        beta=0.9,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        trainable_decay: bool = False,
        implementation: str = "auto",
        trainable_params=None,
        return_sequences: bool = True,
        return_state: bool = False,
        stateful: bool = False,
        jit_compile: bool = True,
        checkpoint_every: Union[None, int, str] = "auto",
        input_sparsity: str = "auto",
        **kwargs,
    ):
        super().__init__(
            return_sequences, return_state, stateful, implementation, jit_compile, checkpoint_every, **kwargs
        )
        self._set_input_sparsity(input_sparsity)
        self._set_cell(
            LeakyReadoutCell(
                units,
                beta=beta,
                use_bias=use_bias,
                kernel_initializer=kernel_initializer,
                bias_initializer=bias_initializer,
                trainable_decay=trainable_decay,
                trainable_params=trainable_params,
                dtype=self.dtype_policy,
                name="cell",
            )
        )

    def compute_mask(self, inputs, mask=None):
        return None
