"""Turn analogue values and event lists into time-major spike tensors.

`rate_encode` and `latency_encode` are TensorFlow functions (they accept NumPy arrays or
tensors and also run inside ``tf.function``); `events_to_raster` is a NumPy function for
binning one recorded event list. Spike outputs put time right after the batch axis:
[batch, nb_steps, ...] for the encoders, [nb_steps, nb_units] for one event list.

Range checks of `x` (values in [0, 1]): when executing eagerly the values are checked in
NumPy and a ``ValueError`` is raised; inside a ``tf.function`` the check is a
``tf.debugging`` assertion that raises ``tf.errors.InvalidArgumentError`` when run.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np
import tensorflow as tf

from ..validation import check_positive_int, check_seed

LATENCY_MODES = ("linear", "log")
OVERFLOW_MODES = ("clip", "drop")


def _check_real(name: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        interval = "{}{}, {}{}".format("(" if low_open else "[", low, high, ")" if high_open else "]")
        raise ValueError(f"{name} must be a number in {interval}, got {name}={value!r}")
    return float(value)


def _unit_interval_tensor(x, name: str = "x") -> tf.Tensor:
    """`x` as a float tensor of rank >= 1 whose values are checked to lie in [0, 1]."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    if x.shape.rank is not None and x.shape.rank < 1:
        raise ValueError(f"{name} must have a batch axis (rank >= 1), got a scalar {name}")
    if tf.executing_eagerly():
        values = x.numpy()
        if values.size and not np.all((values >= 0) & (values <= 1)):
            finite = values[np.isfinite(values)]
            found = f"values in [{finite.min()}, {finite.max()}]" if finite.size else "no finite value"
            if finite.size < values.size:
                found += " and NaN or inf"
            raise ValueError(f"{name} must lie in [0, 1], got {found}")
        return x
    checks = [
        tf.debugging.assert_greater_equal(x, tf.zeros([], x.dtype), message=f"{name} must lie in [0, 1]"),
        tf.debugging.assert_less_equal(x, tf.ones([], x.dtype), message=f"{name} must lie in [0, 1]"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(x)


def _time_major_shape(x: tf.Tensor, nb_steps: int) -> tf.Tensor:
    shape = tf.shape(x)
    return tf.concat([shape[:1], [nb_steps], shape[1:]], axis=0)


def rate_encode(
    x,
    nb_steps: int,
    max_prob: float = 1.0,
    seed: Optional[int] = None,
    dtype=tf.float32,
    generator: Optional[tf.random.Generator] = None,
) -> tf.Tensor:
    """Bernoulli rate coding: each feature spikes independently at every step.

    Args:
        x: values in [0, 1], shape [batch, ...] (NumPy array or tensor).
        nb_steps: number of time steps (> 0).
        max_prob: spike probability per step of a feature equal to 1, in [0, 1].
        seed: with an integer, the spikes are a deterministic function of (x, seed)
            (``tf.random.stateless_uniform`` with seed ``(seed, 0)``); None draws from the
            global generator.
        dtype: floating dtype of the output.
        generator: draw from this `tf.random.Generator` (instead of `seed`): new spikes at
            every call, also inside `tf.data` pipelines under a global seed.

    Returns:
        Spikes of `dtype`, 0/1, shape [batch, nb_steps, ...]; P(spike) = x * max_prob.

    Raises:
        ValueError: for a scalar `x`, values of `x` outside [0, 1] (eager mode), or an
            invalid `nb_steps`, `max_prob` or `seed`.
    """
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    max_prob = _check_real("max_prob", max_prob, 0.0, 1.0)
    seed = check_seed(seed)
    x = _unit_interval_tensor(x, "x")
    prob = tf.expand_dims(x, 1) * tf.cast(max_prob, x.dtype)
    shape = _time_major_shape(x, nb_steps)
    if generator is not None:
        noise = generator.uniform(shape, dtype=x.dtype)
    elif seed is None:
        noise = tf.random.uniform(shape, dtype=x.dtype)
    else:
        noise = tf.random.stateless_uniform(shape, seed=tf.constant([seed, 0], tf.int64), dtype=x.dtype)
    return tf.cast(noise < prob, dtype)


def latency_encode(
    x,
    nb_steps: int,
    mode: str = "linear",
    tau: float = 5.0,
    threshold: Optional[float] = None,
    dtype=tf.float32,
) -> tf.Tensor:
    """Time-to-first-spike coding: at most one spike per feature, earlier for larger values.

    Modes (times in steps, rounded half up to an integer step):

    - ``"linear"``: ``t = round((1 - x) * (nb_steps - 1))``, so x = 1 spikes at step 0 and
      x = 0 at the last step; features with ``x < threshold`` (default 0.0) never spike.
    - ``"log"``: the time an RC membrane driven by a constant input x needs to reach
      `threshold`, ``t = tau * ln(x / (x - threshold))``; features with ``x <= threshold``
      (default 0.01) never reach it, and features whose time rounds past the last step
      (``nb_steps - 1``) do not spike within the window.

    Args:
        x: values in [0, 1], shape [batch, ...] (NumPy array or tensor).
        nb_steps: number of time steps (> 0).
        mode: ``"linear"`` or ``"log"``.
        tau: membrane time constant in time steps for ``"log"`` (> 0); unused for ``"linear"``.
        threshold: ``"linear"``: smallest value that spikes, in [0, 1]; ``"log"``: firing
            threshold, in (0, 1). None picks the mode's default.
        dtype: floating dtype of the output.

    Returns:
        Spikes of `dtype`, 0/1, shape [batch, nb_steps, ...].

    Raises:
        ValueError: for a scalar `x`, values of `x` outside [0, 1] (eager mode), or an
            invalid `nb_steps`, `mode`, `tau` or `threshold`.
    """
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    if mode not in LATENCY_MODES:
        raise ValueError(f"mode must be one of {LATENCY_MODES}, got mode={mode!r}")
    if mode == "linear":
        threshold = _check_real("threshold", 0.0 if threshold is None else threshold, 0.0, 1.0)
    else:
        tau = _check_real("tau", tau, 0.0, math.inf, low_open=True, high_open=True)
        threshold = _check_real(
            "threshold", 0.01 if threshold is None else threshold, 0.0, 1.0, low_open=True, high_open=True
        )
    x = _unit_interval_tensor(x, "x")
    thr = tf.constant(threshold, x.dtype)
    last = tf.cast(nb_steps - 1, x.dtype)
    if mode == "linear":
        fires = x >= thr
        t = tf.floor((1.0 - x) * last + 0.5)
    else:
        fires = x > thr
        safe_x = tf.where(fires, x, tf.ones_like(x))
        t = tf.floor(tf.cast(tau, x.dtype) * tf.math.log(safe_x / (safe_x - thr)) + 0.5)
        fires = tf.logical_and(fires, t <= last)
    steps = tf.where(fires, tf.cast(tf.minimum(t, last), tf.int32), -tf.ones_like(t, tf.int32))
    # one_hot of index -1 is all zeros: silent features.
    return tf.one_hot(steps, nb_steps, axis=1, dtype=dtype)


def events_to_raster(
    times,
    units,
    nb_steps: int,
    nb_units: int,
    max_time: Optional[float] = None,
    dt: Optional[float] = None,
    binary: bool = True,
    overflow: str = "clip",
) -> np.ndarray:
    """Bin one event list into a dense spike raster.

    The window [0, nb_steps * dt) is cut into `nb_steps` half-open bins
    ``[k * dt, (k + 1) * dt)``, with ``dt = max_time / nb_steps`` when `max_time` is given.
    Exactly one of `max_time` and `dt` must be given. Events at or after the end of the
    window are put into the last bin (``overflow="clip"``, the default) or discarded
    (``overflow="drop"``).

    Args:
        times: event times in seconds, float array [nb_events], all >= 0.
        units: unit id of every event, integer array [nb_events], in [0, nb_units).
        nb_steps: number of time bins (> 0).
        nb_units: number of units (> 0).
        max_time: window length in seconds (> 0).
        dt: bin width in seconds (> 0).
        binary: True gives 0/1 entries (a spike in the bin or not); False counts the events
            of each bin.
        overflow: ``"clip"`` or ``"drop"``, see above.

    Returns:
        float32 raster [nb_steps, nb_units].

    Raises:
        ValueError: for mismatched or malformed `times`/`units`, negative or non-finite
            `times`, unit ids out of range, or invalid binning arguments (the message names
            the argument).
    """
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    nb_units = check_positive_int(nb_units, "nb_units")
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {OVERFLOW_MODES}, got overflow={overflow!r}")
    if (max_time is None) == (dt is None):
        raise ValueError(f"exactly one of max_time and dt must be given, got max_time={max_time!r}, dt={dt!r}")
    if max_time is not None:
        max_time = _check_real("max_time", max_time, 0.0, math.inf, low_open=True, high_open=True)
        dt = max_time / nb_steps
    else:
        dt = _check_real("dt", dt, 0.0, math.inf, low_open=True, high_open=True)

    times = np.asarray(times)
    units = np.asarray(units)
    if times.ndim != 1:
        raise ValueError(f"times must be a 1-D array, got shape {times.shape}")
    if units.ndim != 1:
        raise ValueError(f"units must be a 1-D array, got shape {units.shape}")
    if times.shape[0] != units.shape[0]:
        raise ValueError(
            f"times and units must have the same length, got {times.shape[0]} times and {units.shape[0]} units"
        )
    if times.size and not np.issubdtype(times.dtype, np.number):
        raise ValueError(f"times must be numeric, got dtype {times.dtype}")
    times = times.astype(np.float64)
    if times.size and not (np.all(np.isfinite(times)) and times.min() >= 0):
        raise ValueError(f"times must be finite and >= 0, got min {np.min(times)} and max {np.max(times)}")
    if units.size:
        if np.issubdtype(units.dtype, np.integer):
            unit_ids = units.astype(np.int64)
        elif (
            np.issubdtype(units.dtype, np.floating) and np.all(np.isfinite(units)) and np.all(units == np.round(units))
        ):
            unit_ids = units.astype(np.int64)
        else:
            raise ValueError(f"units must hold integer unit ids, got dtype {units.dtype}")
        bad = (unit_ids < 0) | (unit_ids >= nb_units)
        if bad.any():
            raise ValueError(
                f"units must lie in [0, nb_units={nb_units}), got {int(bad.sum())} ids out of range "
                f"(min {unit_ids.min()}, max {unit_ids.max()})"
            )
    else:
        unit_ids = units.astype(np.int64)

    end = max_time if max_time is not None else nb_steps * dt
    if overflow == "drop":
        keep = times < end
        times, unit_ids = times[keep], unit_ids[keep]
    # The clamp also catches events just inside the window that round up to bin nb_steps.
    bins = np.minimum(np.floor(times / dt), nb_steps - 1).astype(np.int64)
    raster = np.zeros((nb_steps, nb_units), dtype=np.float32)
    if binary:
        raster[bins, unit_ids] = 1.0
    else:
        np.add.at(raster, (bins, unit_ids), 1.0)
    return raster
