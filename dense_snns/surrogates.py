"""Spike functions: a Heaviside step forward, a surrogate derivative backward.

Every surrogate is chosen by name and has one `scale` parameter (a width: larger scale,
narrower surrogate). All derivatives peak at 1 for x = 0, so `scale` changes only the width.

| name                         | d spike / dx (closed form)                  | default scale |
|------------------------------|---------------------------------------------|---------------|
| ``superspike``/``fast_sigmoid`` | 1 / (scale*|x| + 1)**2                   | 10            |
| ``rational`` (the seed's)    | 1 / (scale*|x| + 1)                          | 10            |
| ``arctan``                   | 1 / (1 + (pi/2 * scale * x)**2)              | 2             |
| ``sigmoid``                  | 4 * sig(scale*x) * (1 - sig(scale*x))        | 4             |
| ``triangle``                 | max(0, 1 - scale*|x|)                        | 1             |
| ``boxcar``                   | 1 if |x| < 0.5/scale else 0                  | 1             |

``triangle`` and ``boxcar`` have compact support: neurons further than ~1/scale from
threshold get exactly zero gradient, which is what sparse backward passes rely on.

The forward pass is H(x) = 1 if x > 0 else 0 (strict: a neuron exactly at threshold
does not fire), and NaN for a NaN or infinite x: a NaN never disappears.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Dict, Optional, Union

import tensorflow as tf

try:
    from tensorflow.python.eager.record import record_operation as _record_operation
except ImportError:  # TensorFlow before 2.11 (Graphcore's 2.6)
    from tensorflow.python.eager.tape import record_operation as _record_operation


def _superspike(x, scale):
    return 1.0 / tf.square(scale * tf.abs(x) + 1.0)


def _rational(x, scale):
    return 1.0 / (scale * tf.abs(x) + 1.0)


def _arctan(x, scale):
    return 1.0 / (1.0 + tf.square(0.5 * math.pi * scale * x))


def _sigmoid(x, scale):
    # 4 sig(s x) (1 - sig(s x)) as 4 e / (1 + e)^2 with e = exp(-s |x|): no cancellation in
    # 1 - sig where sig rounds towards 1 (float32 lost ~3e-4 of its tails that way).
    e = tf.exp(-scale * tf.abs(x))
    return 4.0 * e / tf.square(1.0 + e)


def _triangle(x, scale):
    return tf.nn.relu(1.0 - scale * tf.abs(x))


def _boxcar(x, scale):
    return tf.cast(tf.abs(x) < 0.5 / scale, x.dtype)


_SURROGATES: Dict[str, Callable] = {
    "superspike": _superspike,
    "fast_sigmoid": _superspike,
    "rational": _rational,
    "arctan": _arctan,
    "sigmoid": _sigmoid,
    "triangle": _triangle,
    "boxcar": _boxcar,
}

_DEFAULT_SCALES = {
    "superspike": 10.0,
    "fast_sigmoid": 10.0,
    "rational": 10.0,
    "arctan": 2.0,
    "sigmoid": 4.0,
    "triangle": 1.0,
    "boxcar": 1.0,
}

SURROGATE_NAMES = tuple(sorted(_SURROGATES))


def _register_gradient(name: str) -> str:
    """Register the graph-mode gradient of the spike function of surrogate `name`: the spike
    op is IdentityN(H(x), x, scale); the gradient of its first output reaches x."""
    derivative = _SURROGATES[name]
    gradient_name = f"DenseSnnsSurrogate_{name}"

    @tf.RegisterGradient(gradient_name)
    def gradient(op, d_spikes, *_):
        x, scale = op.inputs[1], op.inputs[2]
        return [None, d_spikes * derivative(x, scale), None]

    return gradient_name


_GRADIENT_NAMES = {name: _register_gradient(name) for name in _SURROGATES}


def heaviside(x: tf.Tensor) -> tf.Tensor:
    """H(x) = 1 where x > 0 else 0, in the dtype of `x` (no gradient defined); NaN where x is
    NaN or infinite, so that a NaN (or an overflow) reaching a neuron surfaces in its spikes,
    the outputs and the loss instead of becoming "no spike".

    The NaN is a constant selected where x is not finite: TensorFlow 2.6's graph optimiser
    rewrites x * 0 as 0 and its XLA rewrites x - x as 0, either of which would drop it."""
    return tf.where(tf.math.is_finite(x), tf.cast(x > 0, x.dtype), tf.constant(float("nan"), x.dtype))


class Surrogate:
    """A spike function: Heaviside forward, a named surrogate derivative backward.

    Args:
        name: one of `SURROGATE_NAMES`.
        scale: width parameter (> 0); None takes the name's default scale.

    Calling it on `x` (any shape, float) returns spikes of the same shape and dtype.
    """

    def __init__(self, name: str = "superspike", scale: Optional[float] = None):
        if not isinstance(name, str) or name not in _SURROGATES:
            raise ValueError(f"Unknown surrogate spike function name={name!r}; expected one of {list(SURROGATE_NAMES)}")
        scale = _DEFAULT_SCALES[name] if scale is None else scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"Surrogate scale must be a finite number > 0, got scale={scale!r}")
        self.name = name
        self.scale = float(scale)
        derivative = _SURROGATES[name]
        scale_value = self.scale

        @tf.custom_gradient
        def spike(x):
            def grad(upstream):
                return upstream * derivative(x, tf.constant(scale_value, x.dtype))

            return heaviside(x), grad

        self._eager_spike = spike

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if tf.executing_eagerly():
            return self._eager_spike(x)
        # In a graph, `tf.custom_gradient` would register a new gradient function at every
        # trace, and each would keep its traced graph alive (memory growing with every model
        # built). Instead: an IdentityN whose gradient, registered once per surrogate name,
        # serves `tf.gradients`, and the same gradient recorded on the active tapes.
        x = tf.convert_to_tensor(x)
        # tf.constant, not tf.cast: a Python float cast goes through float32 (0.3 would not be
        # exact in float64).
        scale = tf.constant(self.scale, x.dtype)
        with tf.compat.v1.get_default_graph().gradient_override_map({"IdentityN": _GRADIENT_NAMES[self.name]}):
            spikes, _, _ = tf.identity_n([heaviside(x), x, scale])
        derivative = _SURROGATES[self.name]
        _record_operation("DenseSnnsSpike", [spikes], [x], lambda d_spikes: [d_spikes * derivative(x, scale)])
        return spikes

    def derivative(self, x: tf.Tensor) -> tf.Tensor:
        """The surrogate derivative d spike / dx at `x` (used by hand-written backward passes)."""
        return _SURROGATES[self.name](x, tf.constant(self.scale, x.dtype))

    def get_config(self) -> dict:
        return {"name": self.name, "scale": self.scale}

    def __eq__(self, other) -> bool:
        return isinstance(other, Surrogate) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((self.name, self.scale))

    def __repr__(self) -> str:
        return f"Surrogate(name={self.name!r}, scale={self.scale})"


def get(identifier: Union[None, str, dict, Surrogate]) -> Surrogate:
    """Return a `Surrogate` from a name, a config dict ``{"name", "scale"}``, or a Surrogate.

    None gives the default (``superspike`` with scale 10).
    """
    if identifier is None:
        return Surrogate()
    if isinstance(identifier, Surrogate):
        return identifier
    if isinstance(identifier, str):
        return Surrogate(identifier)
    if isinstance(identifier, dict):
        unknown = set(identifier) - {"name", "scale"}
        if unknown:
            raise ValueError(f"Unknown keys {sorted(unknown)} in spike_func config {identifier!r}")
        return Surrogate(**identifier)
    raise ValueError(
        f"spike_func must be a surrogate name, a dict {{'name', 'scale'}} or a Surrogate, got {identifier!r}"
    )
