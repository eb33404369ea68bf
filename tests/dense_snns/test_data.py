"""Tests of dense_snns.data: randman, encoders and the SHD reader."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from dense_snns.data import (
    events_to_raster,
    latency_encode,
    load_shd,
    make_randman,
    randman_dataset,
    randman_rasters,
    rate_encode,
    shd_dataset,
)

SMALL = dict(nb_classes=3, nb_units=12, nb_steps=20, nb_samples=40)


def _keys(x):
    """Hashable key of every sample of a [n, ...] array."""
    return [bytes(np.ascontiguousarray(s).tobytes()) for s in x]


def _collect(ds):
    xs, ys = [], []
    for xb, yb in ds:
        xs.append(xb.numpy())
        ys.append(yb.numpy())
    return np.concatenate(xs), np.concatenate(ys)


# ----------------------------------------------------------------------------- randman


def test_make_randman_shapes_and_dtypes():
    times, units, labels = make_randman(nb_spikes=2, seed=3, **SMALL)
    n = SMALL["nb_classes"] * SMALL["nb_samples"]
    assert times.shape == units.shape == (n, 2 * SMALL["nb_units"])
    assert labels.shape == (n,)
    assert times.dtype == units.dtype == labels.dtype == np.int32
    assert times.min() >= 0 and times.max() < SMALL["nb_steps"]
    np.testing.assert_array_equal(units[0], np.tile(np.arange(SMALL["nb_units"]), 2))


@pytest.mark.parametrize("nb_spikes", [1, 3])
def test_randman_rasters_spike_counts(nb_spikes):
    x, y = randman_rasters(nb_spikes=nb_spikes, seed=5, **SMALL)
    n = SMALL["nb_classes"] * SMALL["nb_samples"]
    assert x.shape == (n, SMALL["nb_steps"], SMALL["nb_units"])
    assert x.dtype == np.float32 and y.dtype == np.int32
    # Every unit fires exactly nb_spikes spikes in every sample.
    np.testing.assert_array_equal(x.sum(axis=1), np.full((n, SMALL["nb_units"]), nb_spikes))
    if nb_spikes == 1:
        assert set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(np.bincount(y), [SMALL["nb_samples"]] * SMALL["nb_classes"])


def test_randman_rasters_match_events_and_dtype():
    times, units, labels = make_randman(seed=9, **SMALL)
    x, y = randman_rasters(seed=9, dtype=np.float64, **SMALL)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(y, labels)
    for i in (0, 7, len(y) - 1):
        expected = np.zeros((SMALL["nb_steps"], SMALL["nb_units"]))
        expected[times[i], units[i]] = 1.0
        np.testing.assert_array_equal(x[i], expected)


def test_randman_seed_determinism():
    a = randman_rasters(seed=11, **SMALL)
    b = randman_rasters(seed=11, **SMALL)
    c = randman_rasters(seed=12, **SMALL)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_randman_shuffle_is_a_permutation():
    t_plain, _, l_plain = make_randman(seed=4, shuffle=False, **SMALL)
    t_shuf, _, l_shuf = make_randman(seed=4, shuffle=True, **SMALL)
    np.testing.assert_array_equal(l_plain, np.repeat(np.arange(SMALL["nb_classes"]), SMALL["nb_samples"]))
    assert not np.array_equal(l_plain, l_shuf)
    assert sorted(_keys(t_plain)) == sorted(_keys(t_shuf))
    # Same (events, label) pairs.
    plain = dict(zip(_keys(t_plain), l_plain))
    assert all(plain[k] == lab for k, lab in zip(_keys(t_shuf), l_shuf))


def test_randman_min_max_normalisation_spans_the_window():
    times, _, labels = make_randman(seed=2, shuffle=False, **SMALL)
    for c in range(SMALL["nb_classes"]):
        t = times[labels == c]
        # Per class, each unit's extreme samples fire in the first and the last step.
        np.testing.assert_array_equal(t.min(axis=0), 0)
        np.testing.assert_array_equal(t.max(axis=0), SMALL["nb_steps"] - 1)


def test_randman_classes_are_distinguishable():
    nb_classes, half = 4, 150
    times, _, labels = make_randman(
        nb_classes=nb_classes, nb_units=30, nb_steps=50, nb_samples=2 * half, seed=0, shuffle=False
    )
    times = times.astype(np.float64)
    first = np.stack([times[labels == c][:half].mean(axis=0) for c in range(nb_classes)])
    second = np.stack([times[labels == c][half:].mean(axis=0) for c in range(nb_classes)])
    within = np.linalg.norm(first - second, axis=1).max()
    centres = (first + second) / 2
    between = min(np.linalg.norm(centres[i] - centres[j]) for i in range(nb_classes) for j in range(i + 1, nb_classes))
    # Mean spike time per unit differs between classes far more than between halves of a class.
    assert between > 1.5 * within
    # A nearest-class-mean rule fitted on one half beats chance (0.25) clearly on the other.
    held_out = np.concatenate([times[labels == c][half:] for c in range(nb_classes)])
    truth = np.repeat(np.arange(nb_classes), half)
    pred = np.linalg.norm(held_out[:, None, :] - first[None], axis=2).argmin(axis=1)
    assert (pred == truth).mean() > 0.5


def test_randman_smoothness_alpha_changes_data():
    a, _, _ = make_randman(alpha=1.0, seed=0, **SMALL)
    b, _, _ = make_randman(alpha=4.0, seed=0, **SMALL)
    assert not np.array_equal(a, b)


def test_randman_dataset_splits():
    kwargs = dict(nb_spikes=1, seed=7, **SMALL)
    train, test = randman_dataset(batch_size=16, test_fraction=0.25, **kwargs)
    x_tr, y_tr = _collect(train)
    x_te, y_te = _collect(test)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32
    assert x_tr.shape[1:] == (SMALL["nb_steps"], SMALL["nb_units"])
    nb_test = 10  # round(0.25 * 40) per class
    np.testing.assert_array_equal(np.bincount(y_te), [nb_test] * SMALL["nb_classes"])
    np.testing.assert_array_equal(np.bincount(y_tr), [SMALL["nb_samples"] - nb_test] * SMALL["nb_classes"])
    # Disjoint, and together exactly the samples of randman_rasters with the same arguments.
    k_tr, k_te = set(_keys(x_tr)), set(_keys(x_te))
    assert not k_tr & k_te
    x_all, y_all = randman_rasters(**kwargs)
    full = dict(zip(_keys(x_all), y_all))
    assert k_tr | k_te == set(full)
    assert all(full[k] == y for k, y in zip(_keys(x_tr), y_tr))
    # Batch shapes.
    xb, yb = next(iter(train))
    assert tuple(xb.shape) == (16, SMALL["nb_steps"], SMALL["nb_units"]) and tuple(yb.shape) == (16,)


def test_randman_dataset_deterministic_and_reshuffled():
    train_a, test_a = randman_dataset(batch_size=8, seed=3, **SMALL)
    train_b, test_b = randman_dataset(batch_size=8, seed=3, **SMALL)
    ea1, eb1 = _collect(train_a), _collect(train_b)
    np.testing.assert_array_equal(ea1[0], eb1[0])
    np.testing.assert_array_equal(ea1[1], eb1[1])
    np.testing.assert_array_equal(_collect(test_a)[0], _collect(test_b)[0])
    ea2 = _collect(train_a)
    assert not np.array_equal(ea1[1], ea2[1])  # new order next epoch ...
    assert sorted(_keys(ea1[0])) == sorted(_keys(ea2[0]))  # ... of the same samples
    train_c, _ = randman_dataset(batch_size=8, seed=3, shuffle=False, **SMALL)
    np.testing.assert_array_equal(_collect(train_c)[0], _collect(train_c)[0])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(nb_classes=0), "nb_classes"),
        (dict(nb_units=2.5), "nb_units"),
        (dict(nb_steps=-1), "nb_steps"),
        (dict(nb_samples=0), "nb_samples"),
        (dict(dim_manifold=0), "dim_manifold"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(nb_spikes=0), "nb_spikes"),
        (dict(seed=-3), "seed"),
        (dict(nb_units=True), "nb_units"),
    ],
)
def test_randman_argument_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_randman(**kwargs)
    with pytest.raises(ValueError, match=name):
        randman_rasters(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(test_fraction=-0.1), "test_fraction"),
        (dict(nb_samples=1, test_fraction=0.9), "test_fraction"),
        (dict(alpha=-1.0), "alpha"),
    ],
)
def test_randman_dataset_argument_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        randman_dataset(**{**SMALL, **kwargs})


# ----------------------------------------------------------------------------- encoders


def test_rate_encode_rates_and_shape():
    x = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    spikes = rate_encode(x, nb_steps=4000, max_prob=0.8, seed=1)
    assert spikes.dtype == tf.float32 and tuple(spikes.shape) == (1, 4000, 4)
    s = spikes.numpy()
    assert set(np.unique(s)) <= {0.0, 1.0}
    np.testing.assert_allclose(s.mean(axis=1)[0], x[0] * 0.8, atol=0.03)
    assert s[0, :, 0].sum() == 0  # x = 0 never fires


def test_rate_encode_multidim_and_determinism():
    x = np.random.default_rng(0).random((3, 4, 5))
    a = rate_encode(x, nb_steps=7, seed=42).numpy()
    b = rate_encode(tf.constant(x), nb_steps=7, seed=42).numpy()
    c = rate_encode(x, nb_steps=7, seed=43).numpy()
    assert a.shape == (3, 7, 4, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    ones = rate_encode(np.ones((2, 3)), nb_steps=5, seed=None).numpy()
    np.testing.assert_array_equal(ones, 1.0)  # max_prob=1: x = 1 fires every step


def test_rate_encode_errors():
    with pytest.raises(ValueError, match="x must lie in"):
        rate_encode(np.array([[0.5, 1.5]]), nb_steps=3)
    with pytest.raises(ValueError, match="x must lie in"):
        rate_encode(np.array([[np.nan]]), nb_steps=3)
    with pytest.raises(ValueError, match="nb_steps"):
        rate_encode(np.array([[0.5]]), nb_steps=0)
    with pytest.raises(ValueError, match="max_prob"):
        rate_encode(np.array([[0.5]]), nb_steps=3, max_prob=1.5)
    with pytest.raises(ValueError, match="seed"):
        rate_encode(np.array([[0.5]]), nb_steps=3, seed=-1)
    with pytest.raises(ValueError, match="x"):
        rate_encode(0.5, nb_steps=3)

    @tf.function
    def graph_encode(v):
        return rate_encode(v, nb_steps=3, seed=0)

    with pytest.raises(tf.errors.InvalidArgumentError, match="x must lie in"):
        graph_encode(tf.constant([[-0.5]]))
    assert tuple(graph_encode(tf.constant([[0.5]])).shape) == (1, 3, 1)


def test_latency_encode_linear_times():
    x = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    spikes = latency_encode(x, nb_steps=5).numpy()
    assert spikes.shape == (1, 5, 4)
    np.testing.assert_array_equal(spikes.sum(axis=1), 1.0)
    np.testing.assert_array_equal(spikes[0].argmax(axis=0), [4, 3, 2, 0])
    silent = latency_encode(x, nb_steps=5, threshold=0.3).numpy()
    np.testing.assert_array_equal(silent.sum(axis=1), [[0.0, 0.0, 1.0, 1.0]])


def test_latency_encode_log_mode():
    x = np.array([[0.005, 0.01, 0.02, 0.1, 0.5, 1.0]])
    spikes = latency_encode(x, nb_steps=50, mode="log", tau=5.0, threshold=0.01).numpy()
    counts = spikes.sum(axis=1)[0]
    np.testing.assert_array_equal(counts, [0, 0, 1, 1, 1, 1])  # x <= threshold never fires
    t = spikes[0].argmax(axis=0)[2:]
    expected = np.floor(5.0 * np.log(x[0, 2:] / (x[0, 2:] - 0.01)) + 0.5)
    np.testing.assert_array_equal(t, expected)
    # Latencies past the window are dropped.
    late = latency_encode(np.array([[0.011]]), nb_steps=5, mode="log", tau=5.0).numpy()
    assert late.sum() == 0


@settings(max_examples=30, deadline=None, database=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=20),
    st.integers(2, 60),
    st.sampled_from(["linear", "log"]),
)
def test_latency_larger_values_fire_earlier(values, nb_steps, mode):
    x = np.array([values], dtype=np.float32)
    spikes = latency_encode(x, nb_steps=nb_steps, mode=mode, tau=10.0).numpy()[0]
    counts = spikes.sum(axis=0)
    assert set(np.unique(counts)) <= {0.0, 1.0}
    if mode == "linear":
        np.testing.assert_array_equal(counts, 1.0)  # threshold 0: every feature fires once
    t = np.where(counts > 0, spikes.argmax(axis=0), nb_steps)  # silent: after the window
    order = np.argsort(-x[0], kind="stable")
    assert np.all(np.diff(t[order]) >= 0)  # larger x -> not later


def test_latency_encode_errors():
    x = np.array([[0.5]])
    with pytest.raises(ValueError, match="mode"):
        latency_encode(x, nb_steps=4, mode="exp")
    with pytest.raises(ValueError, match="nb_steps"):
        latency_encode(x, nb_steps=0)
    with pytest.raises(ValueError, match="tau"):
        latency_encode(x, nb_steps=4, mode="log", tau=0.0)
    with pytest.raises(ValueError, match="threshold"):
        latency_encode(x, nb_steps=4, mode="log", threshold=0.0)
    with pytest.raises(ValueError, match="threshold"):
        latency_encode(x, nb_steps=4, threshold=1.5)
    with pytest.raises(ValueError, match="x must lie in"):
        latency_encode(np.array([[2.0]]), nb_steps=4)


def test_events_to_raster_bins():
    times = np.array([0.05, 0.25, 0.26, 0.95, 1.2])
    units = np.array([3, 0, 0, 4, 1])
    clipped = events_to_raster(times, units, nb_steps=10, nb_units=5, max_time=1.0, binary=False)
    expected = np.zeros((10, 5), np.float32)
    expected[0, 3] = 1
    expected[2, 0] = 2
    expected[9, 4] = 1
    expected[9, 1] = 1  # 1.2 s is past the window: clipped into the last bin
    assert clipped.dtype == np.float32
    np.testing.assert_array_equal(clipped, expected)
    binary = events_to_raster(times, units, nb_steps=10, nb_units=5, max_time=1.0)
    np.testing.assert_array_equal(binary, np.minimum(expected, 1))
    dropped = events_to_raster(times, units, nb_steps=10, nb_units=5, dt=0.1, binary=False, overflow="drop")
    expected[9, 1] = 0
    np.testing.assert_array_equal(dropped, expected)
    empty = events_to_raster(np.zeros(0), np.zeros(0, np.int64), nb_steps=3, nb_units=2, max_time=1.0)
    np.testing.assert_array_equal(empty, np.zeros((3, 2)))


def test_events_to_raster_errors():
    t, u = np.array([0.1, 0.2]), np.array([0, 1])
    with pytest.raises(ValueError, match="units must lie in"):
        events_to_raster(t, np.array([0, 5]), nb_steps=4, nb_units=5, max_time=1.0)
    with pytest.raises(ValueError, match="units must lie in"):
        events_to_raster(t, np.array([-1, 0]), nb_steps=4, nb_units=5, max_time=1.0)
    with pytest.raises(ValueError, match="units must hold integer"):
        events_to_raster(t, np.array([0.5, 1.0]), nb_steps=4, nb_units=5, max_time=1.0)
    with pytest.raises(ValueError, match="same length"):
        events_to_raster(t, np.array([0]), nb_steps=4, nb_units=5, max_time=1.0)
    with pytest.raises(ValueError, match="times must be finite and >= 0"):
        events_to_raster(np.array([-0.1, 0.2]), u, nb_steps=4, nb_units=5, max_time=1.0)
    with pytest.raises(ValueError, match="max_time and dt"):
        events_to_raster(t, u, nb_steps=4, nb_units=5)
    with pytest.raises(ValueError, match="max_time and dt"):
        events_to_raster(t, u, nb_steps=4, nb_units=5, max_time=1.0, dt=0.1)
    with pytest.raises(ValueError, match="max_time"):
        events_to_raster(t, u, nb_steps=4, nb_units=5, max_time=0.0)
    with pytest.raises(ValueError, match="overflow"):
        events_to_raster(t, u, nb_steps=4, nb_units=5, max_time=1.0, overflow="wrap")
    with pytest.raises(ValueError, match="nb_units"):
        events_to_raster(t, u, nb_steps=4, nb_units=0, max_time=1.0)


events = st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True, allow_nan=False), st.integers(0, 6)), max_size=60)


@settings(max_examples=60, deadline=None, database=None)
@given(events, st.integers(1, 30))
def test_events_to_raster_conserves_counts(evs, nb_steps):
    times = np.array([e[0] for e in evs], dtype=np.float64)
    units = np.array([e[1] for e in evs], dtype=np.int64)
    counts = events_to_raster(times, units, nb_steps=nb_steps, nb_units=7, max_time=1.0, binary=False)
    assert counts.sum() == len(evs)
    np.testing.assert_array_equal(counts.sum(axis=0), np.bincount(units, minlength=7))
    dropped = events_to_raster(times, units, nb_steps=nb_steps, nb_units=7, max_time=1.0, binary=False, overflow="drop")
    np.testing.assert_array_equal(dropped, counts)  # nothing past the window
    binary = events_to_raster(times, units, nb_steps=nb_steps, nb_units=7, max_time=1.0)
    np.testing.assert_array_equal(binary, (counts > 0).astype(np.float32))


# ----------------------------------------------------------------------------- SHD

SHD_TIMES = [np.array([0.05, 0.25, 0.26, 0.95, 1.2]), np.array([]), np.array([0.55, 0.01])]
SHD_UNITS = [np.array([3, 0, 0, 4, 1]), np.array([]), np.array([2, 4])]
SHD_LABELS = [7, 0, 19]


def _write_shd(path, times=SHD_TIMES, units=SHD_UNITS, labels=SHD_LABELS, skip=()):
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        if "spikes/times" not in skip:
            ds = spikes.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(np.dtype("float32")))
            for i, t in enumerate(times):
                ds[i] = np.asarray(t, dtype=np.float32)
        if "spikes/units" not in skip:
            ds = spikes.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(np.dtype("uint16")))
            for i, u in enumerate(units):
                ds[i] = np.asarray(u, dtype=np.uint16)
        if "labels" not in skip:
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        extra = f.create_group("extra")
        extra.create_dataset("speaker", data=np.arange(len(labels), dtype=np.uint16))
    return path


def _shd_expected():
    x = np.zeros((3, 10, 5), np.float32)
    x[0, 0, 3] = x[0, 2, 0] = x[0, 9, 4] = x[0, 9, 1] = 1  # 1.2 s clipped into the last bin
    x[2, 5, 2] = x[2, 0, 4] = 1
    return x


def test_load_shd(tmp_path):
    path = _write_shd(tmp_path / "shd.h5")
    x, y = load_shd(path, nb_steps=10, max_time=1.0, nb_units=5)
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, SHD_LABELS)
    np.testing.assert_array_equal(x, _shd_expected())
    counts, _ = load_shd(str(path), nb_steps=10, max_time=1.0, nb_units=5, binary=False, overflow="drop")
    expected = _shd_expected()
    expected[0, 2, 0] = 2
    expected[0, 9, 1] = 0
    np.testing.assert_array_equal(counts, expected)


def test_shd_dataset(tmp_path):
    path = _write_shd(tmp_path / "shd.h5")
    ds = shd_dataset(path, nb_steps=10, max_time=1.0, nb_units=5, batch_size=2, shuffle=False)
    batches = list(ds)
    assert [tuple(b[0].shape) for b in batches] == [(2, 10, 5), (1, 10, 5)]
    assert batches[0][0].dtype == tf.float32 and batches[0][1].dtype == tf.int32
    x, y = _collect(ds)
    np.testing.assert_array_equal(x, _shd_expected())
    np.testing.assert_array_equal(y, SHD_LABELS)

    shuffled = shd_dataset(path, nb_steps=10, max_time=1.0, nb_units=5, batch_size=2, seed=1)
    again = shd_dataset(path, nb_steps=10, max_time=1.0, nb_units=5, batch_size=2, seed=1)
    epochs = [_collect(shuffled) for _ in range(4)]
    np.testing.assert_array_equal(_collect(again)[1], epochs[0][1])  # same seed, same order
    for xs, ys in epochs:  # every epoch is a permutation of the samples
        order = [SHD_LABELS.index(v) for v in ys]
        assert sorted(order) == [0, 1, 2]
        np.testing.assert_array_equal(xs, _shd_expected()[order])
    assert len({tuple(ys) for _, ys in epochs}) > 1  # reshuffled between epochs


def test_shd_missing_file(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_shd(missing)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        shd_dataset(missing)


@pytest.mark.parametrize("key", ["spikes/times", "spikes/units", "labels"])
def test_shd_missing_key(tmp_path, key):
    path = _write_shd(tmp_path / "shd.h5", skip=(key,))
    with pytest.raises(ValueError, match=f"missing the key '{key}'"):
        load_shd(path, nb_steps=10, max_time=1.0, nb_units=5)
    with pytest.raises(ValueError, match=f"missing the key '{key}'"):
        shd_dataset(path, nb_steps=10, max_time=1.0, nb_units=5)


def test_shd_missing_spikes_group(tmp_path):
    path = tmp_path / "labels_only.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="missing the key 'spikes'"):
        load_shd(path)


def test_shd_sample_length_mismatch(tmp_path):
    units = [SHD_UNITS[0], SHD_UNITS[1], np.array([2])]
    path = _write_shd(tmp_path / "shd.h5", units=units)
    with pytest.raises(ValueError, match="sample 2 has 2 spike times but 1 spike units"):
        load_shd(path, nb_steps=10, max_time=1.0, nb_units=5)
    ds = shd_dataset(path, nb_steps=10, max_time=1.0, nb_units=5, batch_size=1, shuffle=False)
    with pytest.raises((ValueError, tf.errors.OpError), match="sample 2 has 2 spike times but 1 spike units"):
        _collect(ds)


def test_shd_sample_count_mismatch(tmp_path):
    path = _write_shd(tmp_path / "shd.h5", labels=[1, 2])
    with pytest.raises(ValueError, match="one entry per sample"):
        load_shd(path, nb_steps=10, max_time=1.0, nb_units=5)
    with pytest.raises(ValueError, match="one entry per sample"):
        shd_dataset(path, nb_steps=10, max_time=1.0, nb_units=5)


def test_shd_unit_out_of_range(tmp_path):
    path = _write_shd(tmp_path / "shd.h5")
    with pytest.raises(ValueError, match=r"sample 0: units must lie in \[0, nb_units=4\)"):
        load_shd(path, nb_steps=10, max_time=1.0, nb_units=4)
    ds = shd_dataset(path, nb_steps=10, max_time=1.0, nb_units=4, shuffle=False)
    with pytest.raises((ValueError, tf.errors.OpError), match="units must lie in"):
        _collect(ds)


def test_shd_argument_errors(tmp_path):
    path = _write_shd(tmp_path / "shd.h5")
    with pytest.raises(ValueError, match="nb_steps"):
        load_shd(path, nb_steps=0)
    with pytest.raises(ValueError, match="max_time"):
        load_shd(path, max_time=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        shd_dataset(path, batch_size=0)
    with pytest.raises(ValueError, match="overflow"):
        shd_dataset(path, overflow="nope")


def test_without_h5py_the_shd_reader_names_its_extra(monkeypatch, tmp_path):
    import sys

    from dense_snns.data import load_shd

    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    with pytest.raises(ImportError, match=r"needs h5py: pip install \.\[shd\]"):
        load_shd(tmp_path / "shd_train.h5")
