"""Handwritten digits that ship with scikit-learn (`sklearn.datasets.load_digits`: 1797 grey
images of 8 x 8 pixels, 10 classes; inside the scikit-learn wheel, no download), as spikes.

Install scikit-learn with ``pip install .[examples]``. Images are scaled to [0, 1] and split
into train and test sets per class (stratified), from a seed. Encodings: ``"rate"`` (every
pixel spikes at each step with probability its grey level; the training spikes are drawn
afresh every epoch, the test spikes once from the seed) or ``"latency"`` (one spike per
pixel, earlier for brighter pixels; blank pixels stay silent). Rate coding draws the training
spikes from a generator seeded with `seed`, so a run is reproducible and epochs differ.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from ..validation import check_positive_int
from .encoders import latency_encode, rate_encode

__all__ = ["DIGITS_ENCODINGS", "digits_dataset", "load_digits_split"]

#: Spike encodings of `digits_dataset`.
DIGITS_ENCODINGS = ("rate", "latency")


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> Tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): images float32 [n, 8, 8] in [0, 1], labels int32
    [n]; `test_fraction` of every class held out (rounded per class), chosen from `seed`."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits need scikit-learn (its bundled copy): pip install .[examples]") from None
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got test_fraction={test_fraction!r}")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: int(round(test_fraction * len(members)))]] = True
    return images[~test], labels[~test], images[test], labels[test]


#: Latency coding: grey levels are multiples of 1/16; below half of one, a pixel is blank.
_BLANK = 1.0 / 32


def _encoder(encoding: str, nb_steps: int, flatten: bool, seed=None, generator=None):
    def encode(x):
        if encoding == "rate":
            spikes = rate_encode(x, nb_steps, seed=seed, generator=generator)
        else:
            spikes = latency_encode(x, nb_steps, threshold=_BLANK)
        if flatten:
            return tf.reshape(spikes, [-1, nb_steps, 64])
        return spikes[..., None]

    return encode


def digits_dataset(
    nb_steps: int = 20,
    encoding: str = "rate",
    batch_size: int = 32,
    flatten: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_train: Optional[int] = None,
) -> Tuple[tf.data.Dataset, tf.data.Dataset]:
    """(train, test) `tf.data` datasets of (spikes, labels) batches: spikes [batch, nb_steps,
    8, 8, 1] (for `SNNConv2D`) or, with `flatten`, [batch, nb_steps, 64]. The training set
    is reshuffled every epoch; `max_train` keeps its first images (a quick run)."""
    if encoding not in DIGITS_ENCODINGS:
        raise ValueError(f"encoding must be one of {DIGITS_ENCODINGS}, got encoding={encoding!r}")
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    x_train, y_train, x_test, y_test = load_digits_split(test_fraction, seed)
    if max_train is not None:
        x_train, y_train = x_train[:max_train], y_train[:max_train]
    train = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(y_train), seed=seed).batch(batch_size)
    generator = tf.random.Generator.from_seed(seed)  # fresh rate-coded spikes every epoch
    train = train.map(lambda x, y: (_encoder(encoding, nb_steps, flatten, generator=generator)(x), y))
    test_spikes = _encoder(encoding, nb_steps, flatten, seed=seed + 1)(x_test)
    test = tf.data.Dataset.from_tensor_slices((test_spikes, y_test)).batch(batch_size)
    return train.prefetch(tf.data.AUTOTUNE), test.prefetch(tf.data.AUTOTUNE)
