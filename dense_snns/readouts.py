"""Sequence-level readout: a non-spiking leaky integrator over [batch, time, features]."""

from __future__ import annotations

import tensorflow as tf

from . import fused, neurons
from ._compat import keras, register
from .cells import LeakyReadoutCell
from .validation import as_numeric_tensor, check_rank


#: The constructor arguments of `LeakyReadout` that live in its cell's config.
CELL_CONFIG_KEYS = ("units", "beta", "use_bias", "kernel_initializer", "bias_initializer", "trainable_decay")
#: `fused.fused_recurrence`'s `implementation` for each of `LeakyReadout`'s.
_RECURRENCE = {"auto": "auto", "kernel": "op", "fused": "tf"}


@register()
class LeakyReadout(keras.layers.Layer):
    """Leaky-integrator readout over a whole sequence.

    The projection of all steps is one matmul; only the linear leak runs over time, in the
    C++ leaky-integrator kernel (`dense_snns.ops.lif`) or in the compiled loop of
    `dense_snns.fused` (under XLA, without the library, or with ``implementation="fused"``),
    both running the step function of `LeakyReadoutCell` (whose arguments it takes).

    Args: those of `LeakyReadoutCell`, and `implementation`: ``"auto"`` (default: the
    kernel when it can run), ``"kernel"`` (the kernel, else a ValueError saying why) or
    ``"fused"`` (the compiled loop; no C++ library in the graph).

    Input: spikes [batch, time, features]. Output: membrane [batch, time, units], to be
    reduced over time by the losses of `dense_snns.losses` (max, mean).
    """

    def __init__(
        self,
        units: int,
        beta=0.9,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        trainable_decay: bool = False,
        implementation: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if implementation not in _RECURRENCE:
            raise ValueError(
                f"implementation must be one of {tuple(_RECURRENCE)}, got implementation={implementation!r}"
            )
        self.implementation = implementation
        self.cell = LeakyReadoutCell(
            units,
            beta=beta,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            trainable_decay=trainable_decay,
            dtype=self.dtype_policy,
            name="cell",
        )
        self.units = self.cell.units

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank is not None and input_shape.rank != 3:
            raise ValueError(f"`inputs` must have rank 3 ([batch, time, features]), got shape {input_shape}")
        if not self.cell.built:
            self.cell.build(input_shape[-1:])
        self.built = True

    def call(self, inputs):
        x = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        check_rank(x, 3, "inputs", "[batch, time, features]")
        current = self.cell.synaptic_current(x, use_bias=False)  # [batch, time, units], one matmul
        bias = None if self.cell.bias is None else tf.cast(self.cell.bias, current.dtype)
        # The compiled loop with hand-written BPTT of the fused layers (no autodiff through a
        # time loop, which XLA would make O(T^2)); it adds the bias.
        outputs, _ = fused.fused_recurrence(
            neurons.leaky_integrator_step,
            neurons.LeakyIntegratorState,
            current,
            [tf.zeros_like(current[:, 0])],
            self.cell.params(current.dtype),
            time_axis=1,
            bias=bias,
            checkpoint_every=fused.AUTO,
            implementation=_RECURRENCE[self.implementation],
        )
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        cell_config = self.cell.get_config()
        for key in CELL_CONFIG_KEYS:
            config[key] = cell_config[key]
        config["implementation"] = self.implementation
        return config
