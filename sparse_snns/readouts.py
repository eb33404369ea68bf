"""A leaky-integrator readout whose input is sparse spikes."""

from __future__ import annotations

import tensorflow as tf

from dense_snns import fused
from dense_snns.cells import LeakyReadoutCell
from dense_snns.compat import add_layer_metric, declare_layer_metric, keras, output_shape, register
from dense_snns.stateful import StatefulLayer
from dense_snns.validation import check_sequence

from ._checks import as_tensor, batch_of, check_implementation, check_positive_int
from .format import SparseSpikes, as_spikes
from .linear import check_spikes, linear_product
from .rowops import scatter

#: Accepted values of `product`.
PRODUCTS = ("auto", "sparse", "dense")

#: ``product="auto"`` takes the dense product when capacity * DENSE_PRODUCT_RATIO >= input_dim.
DENSE_PRODUCT_RATIO = 4


@register(package="sparse_snns")
class SparseLeakyReadout(StatefulLayer, keras.layers.Layer):
    """`dense_snns.LeakyReadout` for sparse spikes: ``V[t] = beta V[t-1] + SparseLinear(s[t])``.

    The current of all steps is one `sparse_linear` (cost O(K * units) per step instead of
    O(input_dim * units)), or, when K is not much smaller than input_dim, one dense matmul
    on the spikes scattered to [T, B, input_dim] (with few readout units a BLAS matmul beats
    the gather-accumulate of the sparse product); the leak and the bias run in the C++
    leaky-integrator kernel of `dense_snns.ops` (the compiled loop of `dense_snns.fused`
    under XLA, without the library or with ``implementation="compiled"``). The gradient reaches
    the input `values` at their K entries only (and so, through a sparse block's
    selection, only the selected neurons). Same
    weights as `LeakyReadout` (``layer.cell``: kernel [input_dim, units], bias, optional
    beta_logit), so `set_weights(get_weights())` moves them between the two.

    Args:
        units: readout units (> 0), e.g. the number of classes.
        input_dim: number of input neurons (> 0): sparse spikes carry only ids.
        beta, use_bias, kernel_initializer, bias_initializer, trainable_params (or
            trainable_decay): as `LeakyReadout`.
        product: ``"sparse"`` (`sparse_linear`), ``"dense"`` (scatter + matmul) or ``"auto"``
            (dense when K * 4 >= input_dim). Both give the same result.
        implementation: of the sparse product and the scatter: ``"auto"``, ``"kernel"`` (C++)
            or ``"compiled"``.
        stateful: carry the membrane [batch, units] from the end of a call to the start of
            the next (needs a fixed batch size; see `dense_snns.stateful`).

    Input: sparse spikes ``[ids [B, T, K], values [B, T, K], count [B, T]]`` (a list or a
    `SparseSpikes`), checked as by `sparse_linear` whichever the product (dtypes and shapes;
    ids in [0, input_dim) and count in [0, K]: ValueError eagerly, InvalidArgumentError in a
    graph; under XLA they contribute nothing and are reported as the metric
    ``<name>_invalid``). Output: membrane [B, T, units].
    """

    def __init__(
        self,
        units: int,
        input_dim: int,
        beta=0.9,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        trainable_decay: bool = False,
        product: str = "auto",
        implementation: str = "auto",
        trainable_params=None,
        stateful: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.stateful = bool(stateful)
        self.state_variables = []
        self.input_dim = check_positive_int(input_dim, "input_dim")
        if product not in PRODUCTS:
            raise ValueError(f"`product` must be one of {PRODUCTS}, got product={product!r}")
        self.product = product
        self.implementation = check_implementation(implementation)
        self.cell = LeakyReadoutCell(
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
        self.units = self.cell.units
        self.invalid_metric_name = f"{self.name}_invalid"
        declare_layer_metric(self, self.invalid_metric_name)

    def build(self, input_shape=None):
        if not self.cell.built:
            self.cell.build((self.input_dim,))
        self._build_states(batch_of(input_shape), [(self.units,)])
        self.built = True

    def resolved_product(self, capacity: int) -> str:
        """The product `call` uses for spikes of capacity K: "sparse" or "dense"."""
        if self.product != "auto":
            return self.product
        return "dense" if capacity * DENSE_PRODUCT_RATIO >= self.input_dim else "sparse"

    def _current(self, inputs):
        """(x W [..., units] without the bias, the bias or None, the checked ids, invalid
        entries [...]) of sparse spikes [..., K], checked once for both products (as by
        `sparse_linear`)."""
        spikes = as_spikes(inputs)
        values = as_tensor(spikes.values, "values")
        if not (values.dtype.is_floating or values.dtype.is_integer or values.dtype.is_bool):
            raise TypeError(f"`values` must be numeric, got dtype {values.dtype.name}")
        dtype = self.compute_dtype
        bias = tf.cast(self.cell.bias, dtype) if self.cell.bias is not None else None
        spikes, kernel, bias, chosen, invalid = check_spikes(
            SparseSpikes(spikes.ids, tf.cast(values, dtype), spikes.count),
            tf.cast(self.cell.kernel, dtype),
            bias,
            self.implementation,
            self._what,
        )
        if self.resolved_product(int(spikes.ids.shape[-1])) == "dense":
            dense = scatter(spikes.ids, spikes.count, spikes.values, self.input_dim, chosen)
            current = tf.tensordot(dense, kernel, axes=1)
        else:
            current = linear_product(spikes, kernel, None, chosen)
        return current, bias, spikes.ids, invalid

    def step(self, inputs_t, states):
        """One time step: (membrane [batch, units], new states) from the sparse spikes of the
        step ``[ids [B, K], values [B, K], count [B]]`` and the states (as `state_variables`):
        the per-step form of `call`."""
        current, bias, _, _ = self._current(inputs_t)
        if bias is not None:
            current = current + bias
        given = list(states)
        states = self._step_states(given, current.dtype)
        membrane, new_states, _ = self.cell.model.block_update(current, states, self.cell.params(current.dtype))
        return membrane, self._in_given_dtypes(new_states, given)

    def call(self, inputs):
        # Batch-major throughout: the product of the [B, T] rows gives [B, T, units], which the
        # leak loop reads and writes in place (no transposes).
        current, bias, ids, invalid = self._current(inputs)
        add_layer_metric(self, self.invalid_metric_name, tf.reduce_mean(tf.cast(invalid, tf.float32)))
        check_sequence(self._what, ids.shape, 3, "ids [batch, time, K]")
        if self.stateful:
            states = self._carried_states(current.shape[0], current.dtype, ids.shape)
        else:
            states = [tf.zeros_like(current[:, 0])]
        # "compiled" keeps every C++ library out of the graph, the leak's kernel included.
        outputs, final_states = fused.fused_recurrence(
            self.cell.model,
            current,
            states,
            self.cell.params(current.dtype),
            time_axis=1,
            bias=bias,
            checkpoint_every=fused.AUTO,
            implementation=self.implementation,
        )
        if self.stateful:
            self._carry_states(final_states)
        return outputs

    def compute_output_shape(self, input_shape):
        ids_shape = input_shape[0] if isinstance(input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
        shape = tuple(ids_shape)[:-1] + (self.units,)
        return output_shape(shape)

    def get_config(self):
        config = super().get_config()
        cell_config = self.cell.get_config()
        for key in LeakyReadoutCell.ARGUMENTS:
            config[key] = cell_config[key]
        config.update(
            {
                "input_dim": self.input_dim,
                "product": self.product,
                "implementation": self.implementation,
                "stateful": self.stateful,
            }
        )
        return config
