"""Randman: spike-timing classification on smooth random manifolds.

A generator of the benchmark of Zenke & Vogels (2021), "The remarkable robustness of
surrogate gradient learning for instilling complex function in spiking neural networks"
(Neural Computation 33(4)), following the construction described there; the Fourier
envelope is written 1/k**alpha for k = 1..K below, which may differ in detail from the
authors' own generator, so data sets of the same seed are not identical to theirs. Every class is its own random manifold of dimension `dim_manifold` embedded in
`nb_units` dimensions; a sample is a point of that manifold and each input unit fires one
spike whose time encodes the unit's coordinate.

Construction (per class and per spike index ``s < nb_spikes``):

- manifold coordinates ``x ~ U[0, 1)^dim_manifold`` are drawn once per class and shared by
  its `nb_spikes` manifolds;
- unit ``i`` takes the value ``f_i(x) = prod_d g_id(x_d)`` with smooth 1-D random functions
  ``g(x) = sum_{k=1..K} a_k / k**alpha * sin(2 pi (k b_k x + c_k))``, where
  ``a_k, b_k, c_k ~ U[0, 1)`` and ``K = min(ceil(1e-3 ** (-1 / alpha)), 1000)`` (terms whose
  envelope ``1 / k**alpha`` falls below 1e-3 are left out);
- each unit's values are min-max normalised to [0, 1] over the class's samples and the value
  ``v`` becomes the spike at time step ``min(floor(v * nb_steps), nb_steps - 1)``.

Everything is drawn from ``np.random.default_rng(seed)``, so a seed fixes the data set.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple

import numpy as np

from ..validation import check_positive_int, check_seed

#: Precision that sets the number of Fourier components: terms with 1 / k**alpha < _PREC are dropped.
_PREC = 1e-3
#: Upper bound on the number of Fourier components of one 1-D random function.
_MAX_COMPONENTS = 1000


def _check_args(nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed):
    nb_classes = check_positive_int(nb_classes, "nb_classes")
    nb_units = check_positive_int(nb_units, "nb_units")
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    nb_samples = check_positive_int(nb_samples, "nb_samples")
    dim_manifold = check_positive_int(dim_manifold, "dim_manifold")
    nb_spikes = check_positive_int(nb_spikes, "nb_spikes")
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not (math.isfinite(float(alpha)) and alpha > 0)
    ):
        raise ValueError(f"alpha must be a finite number > 0, got alpha={alpha!r}")
    seed = check_seed(seed)
    return nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, float(alpha), nb_spikes, seed


def _nb_components(alpha: float) -> int:
    """Number K of Fourier components kept for smoothness exponent `alpha`."""
    return int(min(math.ceil(_PREC ** (-1.0 / alpha)), _MAX_COMPONENTS))


def _manifold_values(rng: np.random.Generator, coords: np.ndarray, nb_units: int, alpha: float) -> np.ndarray:
    """Evaluate one freshly drawn random manifold at `coords`.

    Args:
        rng: random generator the manifold parameters are drawn from.
        coords: manifold coordinates, shape [nb_samples, dim_manifold], values in [0, 1).
        nb_units: embedding dimension (number of input units).
        alpha: smoothness exponent, amplitudes decay as 1 / k**alpha.

    Returns:
        Unit values, float64 [nb_samples, nb_units] (not normalised).
    """
    dim_manifold = coords.shape[1]
    nb_k = _nb_components(alpha)
    # Amplitudes, frequency factors and phases of every 1-D function: [units, dims, 3, K].
    params = rng.random((nb_units, dim_manifold, 3, nb_k))
    k = np.arange(1, nb_k + 1, dtype=np.float64)
    envelope = k ** (-alpha)
    values = np.ones((coords.shape[0], nb_units))
    for d in range(dim_manifold):
        amp = params[:, d, 0, :] * envelope  # [U, K]
        freq = params[:, d, 1, :] * k  # [U, K]
        phase = params[:, d, 2, :]  # [U, K]
        arg = coords[:, d, None, None] * freq[None] + phase[None]  # [N, U, K]
        values *= np.einsum("nuk,uk->nu", np.sin(2.0 * np.pi * arg), amp)
    return values


def _min_max(values: np.ndarray) -> np.ndarray:
    """Min-max normalise each column of `values` ([samples, units]) to [0, 1]."""
    lo = values.min(axis=0, keepdims=True)
    span = values.max(axis=0, keepdims=True) - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (values - lo) / safe, 0.0)


def make_randman(
    nb_classes: int = 10,
    nb_units: int = 100,
    nb_steps: int = 100,
    nb_samples: int = 1000,
    dim_manifold: int = 2,
    alpha: float = 2.0,
    nb_spikes: int = 1,
    seed: Optional[int] = 0,
    shuffle: bool = True,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate the randman benchmark as event lists.

    Args:
        nb_classes: number of classes (one random manifold set each).
        nb_units: number of input units (embedding dimension).
        nb_steps: number of time steps; spike times are step indices in [0, nb_steps).
        nb_samples: samples per class.
        dim_manifold: intrinsic dimension of each manifold.
        alpha: smoothness exponent (> 0); Fourier amplitudes decay as 1 / k**alpha.
        nb_spikes: spikes per unit and sample (each from its own manifold of the class).
        seed: seed of ``np.random.default_rng``; None draws fresh entropy.
        shuffle: shuffle the samples (otherwise they are grouped by class).

    Returns:
        ``(spike_times, units, labels)``: `spike_times` int32 [n, nb_spikes * nb_units] time step
        of every event, `units` int32 [n, nb_spikes * nb_units] unit id of every event (unit ids
        ``0..nb_units-1`` repeated `nb_spikes` times), `labels` int32 [n], with
        ``n = nb_classes * nb_samples``.

    Raises:
        ValueError: if an argument is out of range (the message names it).
    """
    nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed = _check_args(
        nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed
    )
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(nb_classes):
        coords = rng.random((nb_samples, dim_manifold))
        per_spike = []
        for _ in range(nb_spikes):
            values = _min_max(_manifold_values(rng, coords, nb_units, alpha))
            steps = np.minimum(np.floor(values * nb_steps), nb_steps - 1)
            per_spike.append(steps.astype(np.int32))
        times.append(np.concatenate(per_spike, axis=1))
    spike_times = np.concatenate(times, axis=0)
    labels = np.repeat(np.arange(nb_classes, dtype=np.int32), nb_samples)
    units = np.broadcast_to(np.tile(np.arange(nb_units, dtype=np.int32), nb_spikes), spike_times.shape).copy()
    if shuffle:
        order = rng.permutation(spike_times.shape[0])
        spike_times, units, labels = spike_times[order], units[order], labels[order]
    return spike_times, units, labels


def _events_to_rasters(spike_times: np.ndarray, units: np.ndarray, nb_steps: int, nb_units: int, dtype) -> np.ndarray:
    """Dense [n, nb_steps, nb_units] spike counts from per-sample step/unit event arrays."""
    n = spike_times.shape[0]
    x = np.zeros((n, nb_steps, nb_units), dtype=dtype)
    sample = np.broadcast_to(np.arange(n)[:, None], spike_times.shape)
    np.add.at(x, (sample.ravel(), spike_times.ravel(), units.ravel()), 1)
    return x


def randman_rasters(
    nb_classes: int = 10,
    nb_units: int = 100,
    nb_steps: int = 100,
    nb_samples: int = 1000,
    dim_manifold: int = 2,
    alpha: float = 2.0,
    nb_spikes: int = 1,
    seed: Optional[int] = 0,
    shuffle: bool = True,
    dtype=np.float32,
) -> Tuple[np.ndarray, np.ndarray]:
    """Generate the randman benchmark as dense spike rasters.

    Same data as `make_randman` with the same arguments. Entries count the spikes of a unit in
    a step: with ``nb_spikes=1`` they are 0/1; with more spikes two of one unit may share a step
    (entry 2), so every unit's raster always sums to `nb_spikes`. Memory is
    ``nb_classes * nb_samples * nb_steps * nb_units`` entries (400 MB in float32 with the
    defaults); `randman_dataset` builds rasters lazily instead.

    Args:
        nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed,
            shuffle: as in `make_randman`.
        dtype: NumPy dtype of the rasters.

    Returns:
        ``(x, y)``: `x` [n, nb_steps, nb_units] rasters ([sample, time, unit]) of `dtype`,
        `y` int32 [n] labels, ``n = nb_classes * nb_samples``.

    Raises:
        ValueError: if an argument is out of range (the message names it).
    """
    spike_times, units, labels = make_randman(
        nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed, shuffle
    )
    return _events_to_rasters(spike_times, units, nb_steps, nb_units, np.dtype(dtype)), labels


def _stratified_split(labels: np.ndarray, nb_classes: int, nb_test: int, seed: Optional[int]):
    """Indices (train, test) with `nb_test` test samples per class, order shuffled."""
    rng = np.random.default_rng(None if seed is None else [seed, 1])
    train, test = [], []
    for c in range(nb_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:nb_test])
        train.append(idx[nb_test:])
    train_idx = rng.permutation(np.concatenate(train))
    test_idx = rng.permutation(np.concatenate(test))
    return train_idx, test_idx


def randman_dataset(
    nb_classes: int = 10,
    nb_units: int = 100,
    nb_steps: int = 100,
    nb_samples: int = 1000,
    dim_manifold: int = 2,
    alpha: float = 2.0,
    nb_spikes: int = 1,
    seed: Optional[int] = 0,
    shuffle: bool = True,
    batch_size: int = 32,
    test_fraction: float = 0.2,
    drop_remainder: bool = False,
):
    """Randman train/test splits as batched ``tf.data.Dataset`` objects.

    The events of `make_randman` (same arguments, ``shuffle=True``) are split per class:
    ``round(test_fraction * nb_samples)`` samples of every class go to the test set, chosen by
    a generator seeded from `seed`. Rasters ([nb_steps, nb_units] spike counts, as in
    `randman_rasters`) are built on the fly from the events, so memory stays at the size of
    the event lists. The test set is in a fixed order; with `shuffle` the training set is
    reshuffled every epoch by a seeded ``Dataset.shuffle`` (a repeatable sequence of orders
    for a given `seed`).

    Args:
        nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed:
            as in `make_randman`.
        shuffle: reshuffle the training set each epoch.
        batch_size: samples per batch.
        test_fraction: fraction of each class held out for testing, in [0, 1).
        drop_remainder: drop the last incomplete batch of each split.

    Returns:
        ``(train, test)`` datasets of ``(x, y)`` batches: `x` float32
        [batch, nb_steps, nb_units], `y` int32 [batch].

    Raises:
        ValueError: if an argument is out of range (the message names it).
    """
    import tensorflow as tf

    batch_size = check_positive_int(batch_size, "batch_size")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not (0.0 <= test_fraction < 1.0)
    ):
        raise ValueError(f"test_fraction must be a number in [0, 1), got test_fraction={test_fraction!r}")
    nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed = _check_args(
        nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed
    )
    nb_test = int(round(test_fraction * nb_samples))
    if nb_test >= nb_samples:
        raise ValueError(f"test_fraction={test_fraction!r} leaves no training sample with nb_samples={nb_samples}")
    spike_times, units, labels = make_randman(
        nb_classes, nb_units, nb_steps, nb_samples, dim_manifold, alpha, nb_spikes, seed, True
    )
    train_idx, test_idx = _stratified_split(labels, nb_classes, nb_test, seed)

    def to_raster(t, u, y):
        indices = tf.stack([t, u], axis=-1)
        raster = tf.scatter_nd(indices, tf.ones_like(t, dtype=tf.float32), [nb_steps, nb_units])
        return raster, y

    def build(idx, shuffle_each_epoch):
        ds = tf.data.Dataset.from_tensor_slices((spike_times[idx], units[idx], labels[idx]))
        if shuffle_each_epoch and len(idx) > 1:
            ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(to_raster, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

    return build(train_idx, shuffle), build(test_idx, False)
