"""scikit-learn's bundled digits as spikes: a stratified split, both encodings, both layouts."""

import numpy as np
import pytest

from dense_snns.data import digits_dataset, load_digits_split


def test_the_split_holds_out_a_fifth_of_every_class():
    x_train, y_train, x_test, y_test = load_digits_split(0.2, seed=0)
    assert len(y_train) + len(y_test) == 1797 and x_train.shape[1:] == (8, 8)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and x_train.max() > 0.9
    for c in range(10):
        in_test, total = np.sum(y_test == c), np.sum(y_test == c) + np.sum(y_train == c)
        assert abs(in_test - 0.2 * total) <= 0.5
    again = load_digits_split(0.2, seed=0)
    np.testing.assert_array_equal(again[3], y_test)
    assert not np.array_equal(load_digits_split(0.2, seed=1)[3], y_test)


@pytest.mark.parametrize("encoding", ["rate", "latency"])
def test_spikes_of_both_encodings_and_layouts(encoding):
    train, test = digits_dataset(10, encoding, batch_size=8, seed=0, max_train=16)
    x, y = next(iter(train))
    assert x.shape == (8, 10, 8, 8, 1) and y.shape == (8,)
    assert set(np.unique(x.numpy())) <= {0.0, 1.0}
    if encoding == "latency":
        assert x.numpy().sum(axis=1).max() <= 1  # one spike per pixel at most
    flat, _ = next(iter(digits_dataset(10, encoding, batch_size=8, flatten=True, seed=0, max_train=16)[1]))
    assert flat.shape == (8, 10, 64)
    # the test spikes are fixed; rate-coded training spikes are drawn afresh every epoch
    first, second = (np.concatenate([t[0].numpy() for t in test]) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    counts = [np.sort(np.concatenate([b[0].numpy().sum(axis=(1, 2, 3, 4)) for b in train])) for _ in range(2)]
    assert len(counts[0]) == 16
    assert np.array_equal(counts[0], counts[1]) == (encoding == "latency")  # spikes per image, two epochs


def test_blank_pixels_stay_silent_in_latency_coding():
    x_test = load_digits_split(0.2, seed=0)[2]
    _, test = digits_dataset(10, "latency", batch_size=len(x_test), seed=0)
    spikes = next(iter(test))[0].numpy()[..., 0]  # [n, time, 8, 8]
    np.testing.assert_array_equal(spikes.sum(axis=1) > 0, x_test > 0)


def test_rate_coded_epochs_differ_under_a_global_seed():
    from dense_snns import compat

    compat.set_random_seed(0)
    train, _ = digits_dataset(10, "rate", batch_size=16, seed=0, max_train=16)
    first, second = (next(iter(train))[0].numpy() for _ in range(2))
    assert not np.array_equal(np.sort(first.sum(axis=(1, 2, 3, 4))), np.sort(second.sum(axis=(1, 2, 3, 4))))


def test_bad_arguments():
    with pytest.raises(ValueError, match="encoding must be one of"):
        digits_dataset(encoding="phase")
    with pytest.raises(ValueError, match="test_fraction must be in"):
        load_digits_split(1.0)
