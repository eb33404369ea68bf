"""Time-reduced losses and accuracy against NumPy: reduce over time (max, mean, sum), then
sparse categorical cross-entropy (log-softmax of logits, or -log of probabilities)."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras

from conftest import compile_kwargs

NP_REDUCE = {"max": np.max, "mean": np.mean, "sum": np.sum}

# (loss factory, time reduction it must apply)
LOSSES = [
    (ds.MaxOverTimeCrossEntropy, "max"),
    (ds.MeanOverTimeCrossEntropy, "mean"),
    (ds.SpikeCountCrossEntropy, "sum"),
    (lambda **kw: ds.TimeReducedCrossEntropy("max", **kw), "max"),
    (lambda **kw: ds.TimeReducedCrossEntropy("mean", **kw), "mean"),
    (lambda **kw: ds.TimeReducedCrossEntropy(time_reduction="sum", **kw), "sum"),
]
LOSS_IDS = ["MaxOverTime", "MeanOverTime", "SpikeCount", "TimeReduced-max", "TimeReduced-mean", "TimeReduced-sum"]

BATCH, TIME, CLASSES = 6, 7, 4


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_cross_entropy(y_pred, labels, reduction, from_logits):
    """Per-sample cross-entropy of the time-reduced outputs, in float64."""
    reduced = NP_REDUCE[reduction](np.asarray(y_pred, np.float64), axis=1)
    log_p = np_log_softmax(reduced) if from_logits else np.log(reduced)
    return -log_p[np.arange(len(labels)), np.asarray(labels).reshape(-1)]


def probability_outputs(rng, reduction):
    """[batch, time, classes] non-negative outputs whose reduction over time is a probability
    distribution over classes (so the from_logits=False reference is well defined)."""
    p = np.exp(rng.normal(size=(BATCH, CLASSES)))
    p /= p.sum(axis=-1, keepdims=True)
    if reduction == "max":
        # every step is p scaled by a factor in (0, 1], one step per sample exactly p
        factors = rng.uniform(0.1, 0.9, size=(BATCH, TIME, 1))
        factors[np.arange(BATCH), rng.integers(0, TIME, BATCH)] = 1.0
        out = p[:, None, :] * factors
    elif reduction == "mean":
        # a distribution per step: the mean over time is a distribution
        logits = rng.normal(size=(BATCH, TIME, CLASSES))
        out = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    else:
        # p split over the steps with weights summing to 1
        w = rng.uniform(0.1, 1.0, size=(BATCH, TIME, 1))
        out = p[:, None, :] * (w / w.sum(axis=1, keepdims=True))
    out = out.astype(np.float32)
    np.testing.assert_allclose(NP_REDUCE[reduction](out.astype(np.float64), axis=1).sum(-1), 1.0, rtol=1e-5)
    return out


def labels_of(rng, label_shape):
    labels = rng.integers(0, CLASSES, BATCH)
    return labels.reshape(-1, 1) if label_shape == "batch_1" else labels


@pytest.mark.parametrize("make_loss,reduction", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("label_shape", ["batch", "batch_1"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_loss_matches_numpy(rng, make_loss, reduction, label_shape, from_logits):
    if from_logits:
        y_pred = rng.normal(0.0, 2.0, size=(BATCH, TIME, CLASSES)).astype(np.float32)
    else:
        y_pred = probability_outputs(rng, reduction)
    labels = labels_of(rng, label_shape)
    expected = np_cross_entropy(y_pred, labels, reduction, from_logits)

    loss = make_loss(from_logits=from_logits)
    assert loss.time_reduction == reduction and loss.from_logits is from_logits
    value = float(loss(tf.constant(labels), tf.constant(y_pred)))
    assert value == pytest.approx(expected.mean(), rel=1e-5)

    per_sample = make_loss(from_logits=from_logits, reduction="none")(tf.constant(labels), tf.constant(y_pred))
    assert tuple(per_sample.shape) == (BATCH,)
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make_loss,reduction", LOSSES[:3], ids=LOSS_IDS[:3])
def test_time_axis_is_the_reduced_one(make_loss, reduction):
    """A hand-computed case: class 1 wins at one step only."""
    y_pred = np.zeros((1, 4, 2), np.float32)
    y_pred[0, 2, 1] = 4.0
    reduced = {"max": [0.0, 4.0], "mean": [0.0, 1.0], "sum": [0.0, 4.0]}[reduction]
    expected = -np.log(np.exp(reduced[1]) / np.exp(reduced).sum())
    assert float(make_loss()(tf.constant([1]), tf.constant(y_pred))) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("label_shape", ["batch", "batch_1"])
def test_loss_and_accuracy_in_compiled_evaluate(rng, label_shape):
    """Through `compile`/`evaluate` (Keras' own loss and metric plumbing)."""
    y_pred = rng.normal(0.0, 2.0, size=(BATCH, TIME, CLASSES)).astype(np.float32)
    labels = labels_of(rng, label_shape)
    inputs = keras.Input((TIME, CLASSES))
    model = keras.Model(inputs, keras.layers.Activation("linear")(inputs))
    model.compile(
        loss=ds.MeanOverTimeCrossEntropy(), metrics=[ds.TimeReducedAccuracy("mean", name="acc")], **compile_kwargs()
    )
    results = model.evaluate(y_pred, labels, batch_size=BATCH, verbose=0, return_dict=True)
    assert results["loss"] == pytest.approx(np_cross_entropy(y_pred, labels, "mean", True).mean(), rel=1e-5)
    expected_acc = np.mean(y_pred.mean(axis=1).argmax(-1) == labels.reshape(-1))
    assert results["acc"] == pytest.approx(expected_acc)


@pytest.mark.parametrize("reduction", ["max", "mean", "sum"])
@pytest.mark.parametrize("label_shape", ["batch", "batch_1"])
def test_time_reduced_accuracy_matches_numpy_argmax(rng, reduction, label_shape):
    metric = ds.TimeReducedAccuracy(reduction)
    assert metric.name == f"{reduction}_over_time_accuracy"
    batches = []
    for _ in range(2):  # the metric accumulates over batches
        y_pred = rng.normal(size=(BATCH, TIME, CLASSES)).astype(np.float32)
        labels = labels_of(rng, label_shape)
        metric.update_state(tf.constant(labels), tf.constant(y_pred))
        batches.append((y_pred, labels.reshape(-1)))
    y_pred = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    predicted = NP_REDUCE[reduction](y_pred, axis=1).argmax(-1)
    expected = np.mean(predicted == labels)
    assert 0.0 < expected < 1.0  # a non-trivial case
    assert float(metric.result()) == pytest.approx(expected)


def test_accuracy_distinguishes_reductions():
    """max and mean over time pick different classes for the same outputs (NumPy y_pred)."""
    y_pred = np.array([[[5.0, 1.0], [-5.0, 1.0], [-5.0, 1.0]]], np.float32)  # max -> 0, mean -> 1
    labels = tf.constant([1])
    acc_max, acc_mean = ds.TimeReducedAccuracy("max"), ds.TimeReducedAccuracy("mean")
    acc_max.update_state(labels, y_pred)
    acc_mean.update_state(labels, y_pred)
    assert float(acc_max.result()) == 0.0 and float(acc_mean.result()) == 1.0


@pytest.mark.parametrize("reduction", ["max", "mean", "sum"])
def test_reduce_over_time_matches_numpy(rng, reduction):
    x = rng.normal(size=(3, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(
        ds.reduce_over_time(tf.constant(x), reduction).numpy(), NP_REDUCE[reduction](x, axis=1), rtol=1e-6
    )
    # NumPy input is accepted too (regression: `.shape.rank` on a NumPy array)
    np.testing.assert_allclose(ds.reduce_over_time(x, reduction).numpy(), NP_REDUCE[reduction](x, axis=1), rtol=1e-6)


def test_config_round_trip():
    loss = ds.TimeReducedCrossEntropy("sum", from_logits=False)
    clone = ds.TimeReducedCrossEntropy.from_config(loss.get_config())
    assert (clone.time_reduction, clone.from_logits, clone.name) == ("sum", False, loss.name)
    assert ds.MaxOverTimeCrossEntropy.from_config(ds.MaxOverTimeCrossEntropy().get_config()).time_reduction == "max"
    metric = ds.TimeReducedAccuracy("mean")
    assert ds.TimeReducedAccuracy.from_config(metric.get_config()).time_reduction == "mean"


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5)])
def test_reduce_over_time_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match="rank 3"):
        ds.reduce_over_time(tf.zeros(shape), "max")
    with pytest.raises(ValueError, match="rank 3"):
        ds.MaxOverTimeCrossEntropy()(tf.zeros([shape[0]], tf.int32), tf.zeros(shape))


@pytest.mark.parametrize("bad", ["median", "MAX", "", None])
def test_unknown_time_reduction_names_the_argument(bad):
    with pytest.raises(ValueError, match="time_reduction"):
        ds.reduce_over_time(tf.zeros([2, 3, 4]), bad)
    with pytest.raises(ValueError, match="time_reduction"):
        ds.TimeReducedCrossEntropy(bad)
    with pytest.raises(ValueError, match="time_reduction"):
        ds.TimeReducedAccuracy(bad)
