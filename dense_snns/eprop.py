"""e-prop: online training of spiking networks by eligibility traces (Bellec et al., 2020).

BPTT keeps every step of a sequence for its backward pass: memory grows with the length.
e-prop keeps, for every synapse j <- i, an eligibility trace computed forward in time from
the neuron's own dynamics, and multiplies it at every step by a learning signal from the
readout error; the gradient accumulates as the steps run, in memory independent of the
sequence length.

For a neuron model with states s (S per neuron) and update (z[t], s[t]) = F(s[t-1], I[t])
(its declaration in `dense_snns.neurons`), where I_j[t] = sum_i W_ji p_i[t] and p[t] is the
presynaptic vector of the layer (input spikes, its own spikes of step t-1 for recurrent
weights, 1 for the bias)::

    eps_ji[t] = ds_j[t]/ds_j[t-1] eps_ji[t-1] + ds_j[t]/dI_j[t] p_i[t]     eligibility vector [S]
    e_ji[t]   = dz_j[t]/ds_j[t-1] eps_ji[t-1] + dz_j[t]/dI_j[t] p_i[t]     eligibility trace
    f_ji[t]   = kappa f_ji[t-1] + e_ji[t]                                   filtered by the readout decay
    L_j[t]    = sum_k B_jk dE/dy_k[t]                                       learning signal
    dE/dW_ji ~= sum_t L_j[t] f_ji[t]

The partial derivatives of F are those of automatic differentiation of the model's update
(with its surrogate gradient), neuron by neuron: the equations are never written twice, and
every spiking model of the registry trains (LIF, ALIF, current-based LIF, the seed's LIF...).
The readout y[t] = kappa y[t-1] + z[t] W_out + b is a `LeakyReadout`; its own gradient is exact.
The loss E is the cross-entropy of softmax(y[t]) at every step, averaged over steps and
samples. B is W_out^T for the last hidden layer (``feedback="symmetric"``) or a fixed random
matrix (``"random"``); layers below the last one always take fixed random feedback (their
learning signal would otherwise have to pass through the layers above). For one hidden layer
without self-recurrence, symmetric e-prop is exactly the gradient of BPTT.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from . import compat
from .compat import keras, register, tf_function
from .layers import SNNDense
from .readouts import LeakyReadout
from .stateful import StatefulLayer
from .validation import check_sequence

__all__ = ["FEEDBACK", "EProp", "local_jacobians", "per_step_cross_entropy"]

#: Accepted values of `feedback`.
FEEDBACK = ("symmetric", "random")


def per_step_cross_entropy(logits, labels):
    """The e-prop loss: softmax cross-entropy of the readout at every step, averaged over
    steps and samples. logits [batch, time, classes]; labels int [batch] (one class per
    sequence) or [batch, time] (one per step)."""
    logits = tf.convert_to_tensor(logits)
    labels = tf.cast(labels, tf.int32)
    if labels.shape.rank == 1:
        labels = tf.broadcast_to(labels[:, None], tf.shape(logits)[:2])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def local_jacobians(model, current, states, params):
    """One step of `model` and the partial derivatives of its outputs, neuron by neuron.

    Returns (spikes, new states, jac) where ``jac[o][i]`` ([batch, units] or None where there
    is no dependence) is d output_o / d source_i, outputs (spikes, new states...) and sources
    (current, states...) in that order. A neuron's update involves only its own states and
    current (true of every model of `dense_snns.neurons`), so the gradient of an output's sum
    is its per-neuron derivative."""
    sources = [current] + list(states)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(sources)
        spikes, new_state, _ = model.update(current, model.State(*states), params)
        totals = [tf.reduce_sum(output) for output in [spikes] + list(new_state)]
    jac = [tape.gradient(total, sources) for total in totals]
    del tape
    return spikes, list(new_state), jac


def _outer(pre, post):
    """[B, P] x [B, N] -> [B, P, N]."""
    return pre[:, :, None] * post[:, None, :]


@register()
class EProp(StatefulLayer, keras.Model):
    """A stack of fused SNN layers and a leaky readout, trained online by e-prop.

    Args:
        hidden: `SNNDense` layers (any spiking model of `dense_snns.neurons`, with or without
            self-recurrence), applied in order.
        readout: a `LeakyReadout` whose decay is the same for all units.
        feedback: ``"symmetric"`` or ``"random"`` (see the module docstring).
        stateful: carry the neuron states and the eligibility traces from one `fit` batch to
            the next (chunks of long sequences, in order: ``shuffle=False``; a fixed batch
            size), the weights being updated after every chunk; False: every batch starts
            from zero.
        seed: of the random feedback matrices.
        jit_compile: compile the time loop with XLA (not on TensorFlow before 2.9, whose XLA
            crashes on it).

    ``compile(optimizer)`` then ``fit(x, y)`` with inputs [batch, time, features] and labels
    int [batch] or [batch, time]: `train_step` runs the loop over time, accumulates the
    e-prop gradient of the kernels, recurrent kernels and biases (neuron parameters are not
    trained) and applies it; logs ``loss`` (`per_step_cross_entropy`) and ``acc`` (the class
    of the mean readout over time; per step for labels per step). `evaluate` runs the same
    loop without traces. Calling the model runs its layers over the whole sequence (the
    readout [batch, time, classes]), as for BPTT.
    """

    def __init__(
        self,
        hidden: Sequence,
        readout,
        feedback: str = "symmetric",
        stateful: bool = False,
        seed: Optional[int] = None,
        jit_compile: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden = [keras.layers.deserialize(h) if isinstance(h, dict) else h for h in hidden]
        if isinstance(readout, dict):
            readout = keras.layers.deserialize(readout)
        if not hidden:
            raise ValueError("hidden must hold at least one SNNDense layer")
        for layer in hidden:
            if not isinstance(layer, SNNDense):
                raise ValueError(f"hidden layers must be SNNDense layers, got {type(layer).__name__}")
            if not layer.neuron.model.spiking:
                raise ValueError(
                    f"hidden layer {layer.name!r}: its neuron model {layer.neuron.model.name!r} does not spike"
                )
        if not isinstance(readout, LeakyReadout):
            raise ValueError(f"readout must be a LeakyReadout, got {type(readout).__name__}")
        if feedback not in FEEDBACK:
            raise ValueError(f"`feedback` must be one of {FEEDBACK}, got feedback={feedback!r}")
        self.hidden = list(hidden)
        self.readout = readout
        self.feedback = feedback
        self.stateful = bool(stateful)
        self.seed = seed
        self.jit_compile = bool(jit_compile)
        self.state_variables = []
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="acc")
        # XLA compilation of this loop crashes TensorFlow 2.6 (a segmentation fault; Graphcore's
        # base): there it runs without XLA.
        self._loop = tf_function(
            self._run, jit_compile=self.jit_compile and compat.TF_VERSION >= (2, 9), reduce_retracing=True
        )

    # -- structure ------------------------------------------------------------------------
    def build(self, input_shape):
        shape = check_sequence(self._what, input_shape, 3, "[batch, time, features]")
        features = shape[-1]
        for layer in self.hidden:
            if not layer.built:
                layer.build(tf.TensorShape([shape[0], None, features]))
            features = layer.units
        if not self.readout.built:
            self.readout.build(tf.TensorShape([shape[0], None, features]))
        self._check_readout_decay()
        self.feedback_matrices = []
        classes = self.readout.units
        for i, layer in enumerate(self.hidden):
            if i == len(self.hidden) - 1 and self.feedback == "symmetric":
                self.feedback_matrices.append(None)
                continue
            seed = None if self.seed is None else self.seed + i
            init = keras.initializers.RandomNormal(stddev=float(np.sqrt(2.0 / (classes + layer.units))), seed=seed)
            self.feedback_matrices.append(
                self.add_weight(name=f"feedback_{i}", shape=(classes, layer.units), initializer=init, trainable=False)
            )
        self._build_states(shape[0], self._state_shapes(int(shape[-1])))
        self._input_shape = [shape[0], None, int(shape[-1])]
        self.built = True

    def get_build_config(self):
        return {"input_shape": getattr(self, "_input_shape", None)}

    def build_from_config(self, config):
        if config.get("input_shape") is not None:
            self.build(tf.TensorShape(config["input_shape"]))

    def _check_readout_decay(self) -> None:
        with tf.init_scope():  # eagerly, also when first built inside `fit`
            beta = np.asarray(tf.convert_to_tensor(self.readout.cell.neuron.params(tf.float32).beta))
        values = np.unique(beta.ravel())
        if values.size != 1:
            raise ValueError(
                f"e-prop filters the eligibility traces by the readout decay: the readout {self.readout.name!r} "
                f"must have one decay for all units, got beta={values.tolist()}"
            )

    def _presynaptic_sizes(self, features: int) -> List[int]:
        """P of each hidden layer: input features, own units if self-recurrent, 1 if biased."""
        sizes = []
        for layer in self.hidden:
            cell = layer.cell
            sizes.append(features + (layer.units if cell.self_recurrent else 0) + (1 if cell.use_bias else 0))
            features = layer.units
        return sizes

    def _state_shapes(self, features: int) -> List[tuple]:
        """Per-sample shapes of everything the loop carries (see `_initial`)."""
        shapes = []
        for layer, size in zip(self.hidden, self._presynaptic_sizes(features)):
            n = layer.units
            count = len(layer.neuron.state_size)
            shapes += [(n,)] * count + [(n,)]  # neuron states, previous spikes
            shapes += [(size, n)] * count + [(size, n)]  # eligibility vectors, filtered trace
        last = self.hidden[-1].units + (1 if self.readout.cell.use_bias else 0)
        shapes += [(self.readout.units,), (last,)]  # readout membrane, its filtered input
        return shapes

    @property
    def trained_variables(self) -> List:
        """The variables e-prop trains, in the order of its gradients: per hidden layer its
        kernel, recurrent kernel (if any) and bias (if any); then the readout's kernel and bias."""
        variables = []
        for layer in self.hidden:
            cell = layer.cell
            variables += [cell.kernel] + ([cell.recurrent_kernel] if cell.self_recurrent else [])
            variables += [cell.bias] if cell.use_bias else []
        cell = self.readout.cell
        return variables + [cell.kernel] + ([cell.bias] if cell.use_bias else [])

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.hidden:
            x = layer(x, training=training)
        return self.readout(x, training=training)

    # -- the online loop ------------------------------------------------------------------
    def _initial(self, batch, dtype):
        if self.stateful:
            return self._carried_states(batch, dtype)
        features = int(self.hidden[0].cell.kernel.shape[0])
        return [tf.zeros((batch,) + shape, dtype) for shape in self._state_shapes(features)]

    def _unpack(self, flat):
        """The carried list -> per hidden layer (states, spikes, eligibility vectors, filtered
        trace), readout membrane, readout's filtered input."""
        layers, position = [], 0
        for layer in self.hidden:
            count = len(layer.neuron.state_size)
            states = flat[position : position + count]
            spikes = flat[position + count]
            eps = flat[position + count + 1 : position + 2 * count + 1]
            trace = flat[position + 2 * count + 1]
            layers.append((list(states), spikes, list(eps), trace))
            position += 2 * count + 2
        return layers, flat[position], flat[position + 1]

    @staticmethod
    def _pack(layers, membrane, filtered_input):
        flat = []
        for states, spikes, eps, trace in layers:
            flat += list(states) + [spikes] + list(eps) + [trace]
        return flat + [membrane, filtered_input]

    def _presynaptic(self, layer, inputs, previous_spikes):
        parts = [inputs] + ([previous_spikes] if layer.cell.self_recurrent else [])
        if layer.cell.use_bias:
            parts.append(tf.ones_like(inputs[:, :1]))
        return tf.concat(parts, axis=-1)

    def _weights(self, layer, dtype):
        """[P, N]: kernel, recurrent kernel, bias stacked as the presynaptic vector is."""
        cell = layer.cell
        parts = [cell.kernel] + ([cell.recurrent_kernel] if cell.self_recurrent else [])
        parts += [cell.bias[None, :]] if cell.use_bias else []
        return tf.cast(tf.concat(parts, axis=0), dtype)

    def _run(self, x, labels, carried, learn: bool, record: bool):
        """The loop over the steps of x [B, T, F]: (carried at the end, loss, correct, count,
        gradients [...] if `learn`, eligibility traces [T, B, P, N] per layer if `record`)."""
        dtype = x.dtype
        steps = tf.shape(x)[1]
        batch = tf.shape(x)[0]
        classes = self.readout.units
        labels = tf.cast(labels, tf.int32)
        per_step_labels = labels.shape.rank == 2
        weights = [self._weights(layer, dtype) for layer in self.hidden]
        params = [layer.neuron.params(dtype) for layer in self.hidden]
        readout_cell = self.readout.cell
        readout_params = readout_cell.neuron.params(dtype)
        w_out = tf.cast(readout_cell.kernel, dtype)
        b_out = tf.cast(readout_cell.bias, dtype) if readout_cell.use_bias else None
        feedback = [w_out if m is None else tf.cast(tf.transpose(m), dtype) for m in self.feedback_matrices]
        kappa = tf.cast(tf.reshape(readout_params.beta, [-1])[0], dtype)  # one decay for all units (checked)
        scale = 1.0 / tf.cast(batch * steps, dtype)
        grads = [tf.zeros_like(w) for w in weights] + [tf.zeros([w_out.shape[0] + (b_out is not None), classes], dtype)]
        records = [tf.TensorArray(dtype, size=steps) for _ in self.hidden] if record else []

        def body(t, carried, loss, correct, logit_sum, grads, records):
            layers, membrane, filtered_input = self._unpack(carried)
            inputs = x[:, t]
            new_layers, eligibility = [], []
            for layer, w, p, (states, previous, eps, trace) in zip(self.hidden, weights, params, layers):
                pre = self._presynaptic(layer, inputs, previous)
                current = tf.matmul(pre, w)
                spikes, new_states, jac = local_jacobians(layer.neuron.model, current, states, p)
                if learn or record:
                    e = _eligibility(jac[0], pre, eps)
                    eps = [_eligibility(jac[1 + k], pre, eps) for k in range(len(states))]
                    trace = kappa * trace + e
                    eligibility.append(e)
                new_layers.append((new_states, spikes, eps, trace))
                inputs = spikes
            readout_pre = inputs if b_out is None else tf.concat([inputs, tf.ones_like(inputs[:, :1])], axis=-1)
            current = tf.matmul(inputs, w_out) + (0.0 if b_out is None else b_out)
            membrane = readout_cell.model.update(current, readout_cell.model.State(membrane), readout_params).state[0]
            target = labels[:, t] if per_step_labels else labels
            loss += tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(target, membrane)) * scale
            logit_sum += membrane
            if per_step_labels:
                correct += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(membrane, -1, tf.int32), target), dtype))
            if learn:
                delta = (tf.nn.softmax(membrane) - tf.one_hot(target, classes, dtype=dtype)) * scale
                filtered_input = kappa * filtered_input + readout_pre
                grads = list(grads)
                for i, ((_, spikes, _, trace), b) in enumerate(zip(new_layers, feedback)):
                    signal = tf.matmul(delta, b, transpose_b=True)  # [B, N]: sum_k B_jk dE/dy_k
                    grads[i] += tf.einsum("bpn,bn->pn", trace, signal)
                grads[-1] += tf.matmul(filtered_input, delta, transpose_a=True)
            if record:
                records = [r.write(t, e) for r, e in zip(records, eligibility)]
            return t + 1, self._pack(new_layers, membrane, filtered_input), loss, correct, logit_sum, grads, records

        zero = tf.zeros([], dtype)
        loop_vars = (tf.constant(0), list(carried), zero, zero, tf.zeros([batch, classes], dtype), grads, records)
        _, carried, loss, correct, logit_sum, grads, records = tf.while_loop(lambda t, *_: t < steps, body, loop_vars)
        if per_step_labels:
            accuracy = correct / tf.cast(batch * steps, dtype)
        else:
            accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logit_sum, -1, tf.int32), labels), dtype))
        return carried, loss, accuracy, self._split(grads), [r.stack() for r in records]

    def _split(self, grads) -> List[tf.Tensor]:
        """Gradients in the order of `trained_variables`."""
        out = []
        for layer, g in zip(self.hidden, grads[:-1]):
            cell = layer.cell
            n_in = int(cell.kernel.shape[0])
            out.append(g[:n_in])
            offset = n_in
            if cell.self_recurrent:
                out.append(g[offset : offset + layer.units])
                offset += layer.units
            if cell.use_bias:
                out.append(g[offset])
        g = grads[-1]
        out.append(g[: int(self.readout.cell.kernel.shape[0])])
        if self.readout.cell.use_bias:
            out.append(g[-1])
        return out

    def _online(self, x, labels, learn: bool, record: bool = False):
        x = tf.convert_to_tensor(x, self.compute_dtype)
        check_sequence(self._what, x.shape, 3, "[batch, time, features]")
        if not self.built:
            with tf.init_scope():
                self.build(x.shape)
        features = int(self.hidden[0].cell.kernel.shape[0])
        check_sequence(self._what, x.shape, 3, "[batch, time, features]", (features,), "the model (as built)")
        labels = tf.convert_to_tensor(labels)
        self._check_labels(x.shape, labels.shape)
        carried = self._initial(x.shape[0] if x.shape[0] is not None else tf.shape(x)[0], x.dtype)
        carried, loss, accuracy, grads, records = self._loop(x, labels, carried, learn, record)
        if self.stateful:
            self._carry_states(carried)
        return loss, accuracy, grads, records

    def _check_labels(self, x_shape, labels_shape) -> None:
        """Labels [batch] (one class per sequence) or [batch, time] (one per step)."""
        expected = [tf.TensorShape(x_shape[:1]), tf.TensorShape(x_shape[:2])]
        if labels_shape.rank is None:
            return
        if labels_shape.rank not in (1, 2) or not labels_shape.is_compatible_with(expected[labels_shape.rank - 1]):
            raise ValueError(
                f"{self._what}: `labels` must be [batch] or [batch, time] of `inputs` {x_shape}, "
                f"got shape {labels_shape}"
            )

    def gradients(self, x, labels) -> List[tf.Tensor]:
        """The e-prop gradient of `per_step_cross_entropy` for x [B, T, F] and labels,
        in the order of `trained_variables` (the states are carried if stateful)."""
        return self._online(x, labels, learn=True)[2]

    def eligibility_traces(self, x) -> List[tf.Tensor]:
        """The eligibility traces e[t] of every hidden layer, [batch, time, P, N] (P: input
        features, then own units if self-recurrent, then 1 for the bias): for inspection,
        their memory grows with time."""
        labels = tf.zeros([tf.shape(x)[0]], tf.int32)
        records = self._online(x, labels, learn=False, record=True)[3]
        return [tf.transpose(r, [1, 0, 2, 3]) for r in records]

    # -- Keras ----------------------------------------------------------------------------
    def train_step(self, data):
        x, labels = data[0], data[1]
        loss, accuracy, grads, _ = self._online(x, labels, learn=True)
        self.optimizer.apply_gradients(zip(grads, self.trained_variables))
        return self._log(loss, accuracy)

    def test_step(self, data):
        x, labels = data[0], data[1]
        loss, accuracy, _, _ = self._online(x, labels, learn=False)
        return self._log(loss, accuracy)

    def _log(self, loss, accuracy):
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {
            "name": self.name,
            "hidden": [keras.layers.serialize(layer) for layer in self.hidden],
            "readout": keras.layers.serialize(self.readout),
            "feedback": self.feedback,
            "stateful": self.stateful,
            "seed": self.seed,
            "jit_compile": self.jit_compile,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _eligibility(jac_row, pre, eps):
    """d out[t]/d W from one row of the local Jacobian: (d out/d I) p[t] + sum_l (d out/d s_l)
    eps_l[t-1], [B, P, N]; `jac_row` = [d out/d I, d out/d s_1, ...]."""
    d_current, d_states = jac_row[0], jac_row[1:]
    total = _outer(pre, d_current) if d_current is not None else tf.zeros_like(eps[0])
    for d, e in zip(d_states, eps):
        if d is not None:
            total += d[:, None, :] * e
    return total
