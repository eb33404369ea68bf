"""Reader for the Spiking Heidelberg Digits (SHD) HDF5 files.

Expected layout (the one of the published ``shd_train.h5`` / ``shd_test.h5``; other
entries such as ``extra/`` are ignored):

- ``spikes/times``: variable-length float arrays, one per sample, event times in seconds;
- ``spikes/units``: variable-length integer arrays, one per sample, channel ids of the
  events (700 cochlea channels in SHD);
- ``labels``: integer array [nb_samples], class of every sample (20 classes in SHD).

Samples are binned into [nb_steps, nb_units] rasters with
`dense_snns.data.encoders.events_to_raster` over the window [0, max_time): bins are
``max_time / nb_steps`` seconds wide and, with the default ``overflow="clip"``, events at or
after `max_time` land in the last bin (``overflow="drop"`` discards them instead).
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

from ..validation import check_positive_int, check_seed
from .encoders import events_to_raster

#: Keys that must be present in an SHD file.
REQUIRED_KEYS = ("spikes", "spikes/times", "spikes/units", "labels")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading SHD files needs h5py: pip install .[shd] (or pip install h5py)") from None
    return h5py


def _check_path(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SHD file not found: path={path!r}")
    return path


def _layout(f, path: str):
    """(times, units, labels) datasets of an open file, checked against the SHD layout."""
    h5py = _h5py()

    for key in REQUIRED_KEYS:
        if key not in f:
            raise ValueError(
                f"{path!r} is missing the key {key!r} (an SHD file needs spikes/times, spikes/units and labels)"
            )
    times, units, labels = f["spikes/times"], f["spikes/units"], f["labels"]
    for key, ds in (("spikes/times", times), ("spikes/units", units), ("labels", labels)):
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise ValueError(f"{path!r}: key {key!r} must be a 1-D dataset")
    if not (times.shape[0] == units.shape[0] == labels.shape[0]):
        raise ValueError(
            f"{path!r}: spikes/times, spikes/units and labels must have one entry per sample, got "
            f"{times.shape[0]}, {units.shape[0]} and {labels.shape[0]}"
        )
    return times, units, labels


def _read_labels(ds, path: str) -> np.ndarray:
    labels = np.asarray(ds[()])
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path!r}: key 'labels' must hold integers, got dtype {labels.dtype}")
    return labels.astype(np.int32)


def _sample_raster(
    index: int, times, units, path: str, nb_steps: int, nb_units: int, max_time: float, binary: bool, overflow: str
) -> np.ndarray:
    times = np.asarray(times)
    units = np.asarray(units)
    if times.shape != units.shape:
        raise ValueError(f"{path!r}: sample {index} has {times.size} spike times but {units.size} spike units")
    try:
        return events_to_raster(times, units, nb_steps, nb_units, max_time=max_time, binary=binary, overflow=overflow)
    except ValueError as err:
        raise ValueError(f"{path!r}: sample {index}: {err}") from None


def _check_settings(nb_steps, max_time, nb_units):
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    nb_units = check_positive_int(nb_units, "nb_units")
    # Validates max_time (and the overflow mode) before the file is touched.
    events_to_raster(np.zeros(0), np.zeros(0, np.int64), nb_steps, nb_units, max_time=max_time)
    return nb_steps, float(max_time), nb_units


def load_shd(
    path,
    nb_steps: int = 100,
    max_time: float = 1.4,
    nb_units: int = 700,
    binary: bool = True,
    overflow: str = "clip",
) -> Tuple[np.ndarray, np.ndarray]:
    """Load a whole SHD file as dense rasters.

    Memory is ``nb_samples * nb_steps * nb_units`` float32 entries (about 2.3 GB for the SHD
    training set at the defaults); `shd_dataset` streams samples instead.

    Args:
        path: path of the HDF5 file.
        nb_steps: number of time bins (> 0).
        max_time: window length in seconds (> 0).
        nb_units: number of input channels (> 0); unit ids must lie in [0, nb_units).
        binary: 0/1 entries (True) or event counts per bin (False).
        overflow: ``"clip"`` (events at or after `max_time` go to the last bin) or ``"drop"``.

    Returns:
        ``(x, y)``: `x` float32 [nb_samples, nb_steps, nb_units], `y` int32 [nb_samples].

    Raises:
        FileNotFoundError: if `path` is not a file.
        ValueError: on a missing key, inconsistent lengths, a sample whose times and units
            differ in length, unit ids out of range, or invalid arguments.
    """
    h5py = _h5py()
    nb_steps, max_time, nb_units = _check_settings(nb_steps, max_time, nb_units)
    if overflow not in ("clip", "drop"):
        raise ValueError(f"overflow must be one of ('clip', 'drop'), got overflow={overflow!r}")
    path = _check_path(path)
    with h5py.File(path, "r") as f:
        times_ds, units_ds, labels_ds = _layout(f, path)
        y = _read_labels(labels_ds, path)
        all_times = times_ds[()]
        all_units = units_ds[()]
    x = np.zeros((y.shape[0], nb_steps, nb_units), dtype=np.float32)
    for i in range(y.shape[0]):
        x[i] = _sample_raster(i, all_times[i], all_units[i], path, nb_steps, nb_units, max_time, binary, overflow)
    return x, y


def shd_dataset(
    path,
    nb_steps: int = 100,
    max_time: float = 1.4,
    nb_units: int = 700,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: Optional[int] = 0,
    binary: bool = True,
    overflow: str = "clip",
    drop_remainder: bool = False,
):
    """Stream an SHD file as a batched ``tf.data.Dataset``.

    The file's layout and labels are checked when the dataset is built; the events of each
    sample are read and binned lazily (``Dataset.from_generator``) while iterating, so memory
    stays at one batch. A sample that turns out to be malformed (times and units of different
    lengths, unit ids out of range) stops the iteration with a TensorFlow error carrying the
    same message as the ``ValueError`` of `load_shd`. With `shuffle`, every pass over the
    dataset reads the samples in a new order drawn from ``np.random.default_rng(seed)``, so
    a freshly built dataset always yields the same sequence of epochs.

    Args:
        path: path of the HDF5 file.
        nb_steps: number of time bins (> 0).
        max_time: window length in seconds (> 0).
        nb_units: number of input channels (> 0).
        batch_size: samples per batch (> 0).
        shuffle: reshuffle the sample order every epoch.
        seed: seed of the shuffling generator (non-negative int or None).
        binary: 0/1 entries (True) or event counts per bin (False).
        overflow: ``"clip"`` or ``"drop"``, as in `load_shd`.
        drop_remainder: drop the last incomplete batch.

    Returns:
        Dataset of ``(x, y)`` batches: `x` float32 [batch, nb_steps, nb_units], `y` int32 [batch].

    Raises:
        FileNotFoundError: if `path` is not a file.
        ValueError: on a missing key, inconsistent dataset lengths or invalid arguments.
    """
    import tensorflow as tf

    h5py = _h5py()

    nb_steps, max_time, nb_units = _check_settings(nb_steps, max_time, nb_units)
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    if overflow not in ("clip", "drop"):
        raise ValueError(f"overflow must be one of ('clip', 'drop'), got overflow={overflow!r}")
    path = _check_path(path)
    with h5py.File(path, "r") as f:
        _, _, labels_ds = _layout(f, path)
        labels = _read_labels(labels_ds, path)
    nb_samples = labels.shape[0]
    rng = np.random.default_rng(seed)

    def samples():
        order = rng.permutation(nb_samples) if shuffle else np.arange(nb_samples)
        with h5py.File(path, "r") as f:
            times_ds, units_ds, _ = _layout(f, path)
            for i in order:
                raster = _sample_raster(
                    int(i), times_ds[i], units_ds[i], path, nb_steps, nb_units, max_time, binary, overflow
                )
                yield raster, labels[i]

    ds = tf.data.Dataset.from_generator(
        samples,
        output_signature=(
            tf.TensorSpec(shape=(nb_steps, nb_units), dtype=tf.float32),
            tf.TensorSpec(shape=(), dtype=tf.int32),
        ),
    )
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
