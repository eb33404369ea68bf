"""dense_snns.fused on its own: the compiled loops against the plain reference loop, every
layout and checkpointing, the block steps (outputs, sharing, where their loops live) and
the checkpoint rule."""

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import compat, fused, neurons

from helpers import assert_close_to_scale


class TwoStateStep:
    """A step with two states and a tensor argument: out = tanh(c + a), a' = w a + c, b' = a b."""

    def __call__(self, current, mask_t, states, tensors):
        a, b = states
        (w,) = tensors
        new_a = w * a + current
        out = tf.tanh(current + a)
        if mask_t is not None:
            keep = fused.broadcast_mask(mask_t, out)
            new_a, out = tf.where(keep, new_a, a), tf.where(keep, out, tf.zeros_like(out))
        return out, [new_a, a * b]


def run(recurrence, step, currents, states, w, **kwargs):
    with tf.GradientTape() as tape:
        tape.watch([currents, w] + states)
        outputs, final = recurrence(step, currents, states, [w], **kwargs)
        loss = tf.reduce_sum(outputs * tf.cos(currents)) + tf.reduce_sum(final[0]) + tf.reduce_sum(final[1])
    return [outputs] + final + tape.gradient(loss, [currents, w] + states)


@pytest.mark.parametrize("time_axis", [0, 1])
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("checkpoint_every", [None, 3, 7, "auto"])
@pytest.mark.parametrize("masked", [False, True])
def test_compiled_recurrence_equals_the_reference_loop(rng, time_axis, jit_compile, checkpoint_every, masked):
    steps, batch, units = 7, 3, 4
    shape = (steps, batch, units) if time_axis == 0 else (batch, steps, units)
    currents = tf.constant(rng.normal(0.0, 0.5, shape))
    states = [tf.constant(rng.normal(size=(batch, units))), tf.constant(rng.uniform(0.5, 1.0, (batch, units)))]
    w = tf.constant(rng.uniform(0.5, 0.9, units))
    mask = None
    if masked:
        mask = np.arange(steps)[None, :] < np.array([[steps], [steps - 2], [1]])
        mask = tf.constant(mask if time_axis == 1 else mask.T)
    step = TwoStateStep()
    got = run(fused.compiled_recurrence, step, currents, states, w, mask=mask, jit_compile=jit_compile,
              time_axis=time_axis, checkpoint_every=checkpoint_every)  # fmt: skip
    want = run(fused.reference_recurrence, step, currents, states, w, mask=mask, time_axis=time_axis)
    for g, r in zip(got, want):
        assert_close_to_scale(g, r, 1e-12)


class DeferredProductStep:
    """out = tanh(c + h @ W + v * h), h' = out: W's gradient deferred (computed after the loop
    from the recorded h and d(h @ W)); v's summed in the loop; U deferred but used by no
    product (its gradient is 0)."""

    deferred_tensors = (0, 2)

    def __init__(self):
        self.deferred_calls = 0

    def product(self, h, w, record, replay):
        return tf.matmul(h, w if record is None else tf.stop_gradient(w))

    def __call__(self, current, mask_t, states, tensors, record=None, **replay):
        (h,) = states
        w, v, _ = tensors
        y = self.product(h, w, record, replay.get("replay"))
        if record is not None:
            record.append((0, (h,), y))
        out = tf.tanh(current + y + v * h)
        if mask_t is not None:
            keep = fused.broadcast_mask(mask_t, out)
            out = tf.where(keep, out, h)
        return out, [out]

    def deferred_gradient(self, position, parts, d_output, tensor):
        self.deferred_calls += 1
        assert position == 0 and parts[0].shape.rank == 2 and d_output.shape.rank == 2
        return tf.matmul(parts[0], d_output, transpose_a=True)


@pytest.mark.parametrize("time_axis", [0, 1])
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("checkpoint_every", [None, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_deferred_tensor_gradients_equal_autodiff(rng, time_axis, jit_compile, checkpoint_every, masked):
    """A step's deferred tensors get the gradient of the reference loop's autodiff: one
    product over the records of all steps (also checkpointed, masked, batch-major, XLA)."""
    steps, batch, units = 7, 3, 4
    shape = (steps, batch, units) if time_axis == 0 else (batch, steps, units)
    currents = tf.constant(rng.normal(0.0, 0.5, shape))
    h0 = tf.constant(rng.normal(size=(batch, units)))
    tensors = [tf.constant(rng.normal(0.0, 0.4, (units, units))), tf.constant(rng.uniform(0.2, 0.6, units))]
    tensors.append(tf.constant(rng.normal(size=(2, 5))))
    mask = None
    if masked:
        mask = np.arange(steps)[None, :] < np.array([[steps], [steps - 2], [1]])
        mask = tf.constant(mask if time_axis == 1 else mask.T)
    results = []
    for recurrence, kwargs in [
        (fused.compiled_recurrence, dict(jit_compile=jit_compile, checkpoint_every=checkpoint_every)),
        (fused.reference_recurrence, {}),
    ]:
        step = DeferredProductStep()
        with tf.GradientTape() as tape:
            tape.watch([currents, h0] + tensors)
            outputs, (final,) = recurrence(step, currents, [h0], tensors, mask=mask, time_axis=time_axis, **kwargs)
            loss = tf.reduce_sum(outputs * tf.cos(currents)) + tf.reduce_sum(final**2)
        results.append([outputs, final] + tape.gradient(loss, [currents, h0] + tensors))
        if recurrence is fused.compiled_recurrence:
            # W's gradient: one product after the loop (not deferred before TensorFlow 2.9,
            # whose XLA crashes on the recording loop)
            assert step.deferred_calls == (1 if compat.TF_VERSION >= (2, 9) else 0)
    for got, want in zip(*results):
        if want is None:  # U: the reference loop does not use it
            np.testing.assert_array_equal(got, np.zeros((2, 5)))
        else:
            assert_close_to_scale(got, want, 1e-12)


class ReplayingProductStep(DeferredProductStep):
    """DeferredProductStep whose backward pass replays y = h @ W from the forward loop (with
    its gradient dy W^T to h) instead of computing it again; with `count` (not under XLA)
    counts the products it runs."""

    def __init__(self, replays: bool, count: bool):
        super().__init__()
        self.replays_products = replays
        self.count = count
        self.products = 0

    def _counted(self):
        self.products += 1

    def product(self, h, w, record, replay):
        if replay is not None:
            return fused.replayed_product(replay[0], h, lambda dy: tf.matmul(dy, w, transpose_b=True))
        counted = [tf.py_function(self._counted, [], [])] if self.count else []
        with tf.control_dependencies(counted):
            return super().product(h, w, record, replay)


@pytest.mark.skipif(compat.TF_VERSION < (2, 9), reason="no deferred tensors, so no replay, before TensorFlow 2.9")
@pytest.mark.parametrize("time_axis", [0, 1])
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("checkpoint_every", [None, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_replayed_products_give_the_gradients_of_autodiff(rng, time_axis, jit_compile, checkpoint_every, masked):
    """A step that replays its products in the backward pass (from the forward's outputs, or
    from the recomputed segment) gets the reference loop's gradients, and runs T products
    fewer than the same step computing them again."""
    steps, batch, units = 7, 3, 4
    shape = (steps, batch, units) if time_axis == 0 else (batch, steps, units)
    currents = tf.constant(rng.normal(0.0, 0.5, shape))
    h0 = tf.constant(rng.normal(size=(batch, units)))
    tensors = [tf.constant(rng.normal(0.0, 0.4, (units, units))), tf.constant(rng.uniform(0.2, 0.6, units))]
    tensors.append(tf.constant(rng.normal(size=(2, 5))))
    mask = None
    if masked:
        mask = np.arange(steps)[None, :] < np.array([[steps], [steps - 2], [1]])
        mask = tf.constant(mask if time_axis == 1 else mask.T)
    results, products = [], []
    for recurrence, replays, kwargs in [
        (fused.compiled_recurrence, True, dict(jit_compile=jit_compile, checkpoint_every=checkpoint_every)),
        (fused.compiled_recurrence, False, dict(jit_compile=jit_compile, checkpoint_every=checkpoint_every)),
        (fused.reference_recurrence, False, {}),
    ]:
        step = ReplayingProductStep(replays, count=not jit_compile)
        with tf.GradientTape() as tape:
            tape.watch([currents, h0] + tensors)
            outputs, (final,) = recurrence(step, currents, [h0], tensors, mask=mask, time_axis=time_axis, **kwargs)
            loss = tf.reduce_sum(outputs * tf.cos(currents)) + tf.reduce_sum(final**2)
        results.append([outputs, final] + tape.gradient(loss, [currents, h0] + tensors)[:4])
        products.append(step.products)
    for replayed, computed, want in zip(*results):
        assert_close_to_scale(replayed, want, 1e-12)
        assert_close_to_scale(computed, want, 1e-12)
    if not jit_compile:
        assert products[1] - products[0] == steps


@pytest.mark.parametrize("time_axis", [0, 1])
@pytest.mark.parametrize("steps", [1, 2])
def test_a_batch_of_one_runs_forward_and_backward(rng, time_axis, steps):
    """XLA of TensorFlow before 2.9 refuses the backward pass over a batch of 1 ("Dynamic
    degenerated dimension"); there the loop runs unjitted."""
    shape = (steps, 1, 2) if time_axis == 0 else (1, steps, 2)
    currents = tf.constant(rng.normal(0.0, 0.5, shape))
    states = [tf.constant(rng.normal(size=(1, 2))), tf.constant(rng.uniform(0.5, 1.0, (1, 2)))]
    w = tf.constant(rng.uniform(0.5, 0.9, 2))
    step = TwoStateStep()
    got = run(fused.compiled_recurrence, step, currents, states, w, jit_compile=True, time_axis=time_axis)
    want = run(fused.reference_recurrence, step, currents, states, w, time_axis=time_axis)
    for g, r in zip(got, want):
        assert_close_to_scale(g, r, 1e-12)


def test_recurrence_arguments_are_checked():
    step = TwoStateStep()
    with pytest.raises(ValueError, match="time_axis must be 0 or 1"):
        fused.compiled_recurrence(step, tf.zeros([2, 3, 4]), [tf.zeros([3, 4])] * 2, [tf.ones(4)], time_axis=2)
    with pytest.raises(ValueError, match="checkpoint_every must be"):
        fused.compiled_recurrence(step, tf.zeros([2, 3, 4]), [tf.zeros([3, 4])] * 2, [tf.ones(4)], checkpoint_every=0)
    with pytest.raises(TypeError, match="can hold attributes"):
        fused.compiled_recurrence(object(), tf.zeros([2, 3, 4]), [tf.zeros([3, 4])], [])


@pytest.mark.parametrize(
    "value, steps, expected",
    [
        (None, 1000, None),
        (5, 1000, 5),
        ("auto", 255, None),
        ("auto", 256, 32),
        ("auto", 2000, 45),
        ("auto", None, None),
    ],
)
def test_the_checkpoint_rule(value, steps, expected):
    assert fused.resolve_checkpoint_every(value, steps) == expected


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "often"])
def test_bad_checkpoint_every(value):
    with pytest.raises(ValueError, match="checkpoint_every"):
        fused.check_checkpoint_every(value, allow_auto=True)


def lif_problem(rng, steps=12):
    model = neurons.get("lif")
    params = model.params_from({"threshold": 0.5}, spike_fn=ds.Surrogate())
    currents = tf.constant(rng.normal(0.3, 0.6, (2, steps, 5)).astype(np.float32))
    return model, params, currents, [tf.zeros([2, 5])]


def test_pre_spike_output_is_the_models_pre_spike_value(rng):
    model, params, currents, states = lif_problem(rng)
    x, _ = fused.fused_recurrence(model, currents, states, params, time_axis=1, output="pre_spike")
    state, expected = model.State(*states), []
    for t in range(currents.shape[1]):
        update = model.update(currents[:, t], state, params)
        state = update.state
        expected.append(update.pre_spike)
    np.testing.assert_allclose(x.numpy(), tf.stack(expected, axis=1).numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ds.ImplementationError, match="no output='pre_spike'"):
        fused.fused_recurrence(
            model, currents, states, params, time_axis=1, output="pre_spike", implementation="kernel"
        )
    with pytest.raises(ValueError, match="does not spike"):
        fused.BlockStep(neurons.get("leaky_integrator"), neurons.LeakyIntegratorParams(0.9), False, output="pre_spike")


def test_the_earlier_step_function_form_equals_the_model_form(rng):
    model, params, currents, states = lif_problem(rng)
    for implementation in ("compiled", "reference", "auto"):
        new, _ = fused.fused_recurrence(model, currents, states, params, time_axis=1, implementation=implementation)
        old, _ = fused.fused_recurrence(neurons.lif_step, neurons.LIFState, currents, states, params, time_axis=1,
                                        implementation=implementation)  # fmt: skip
        np.testing.assert_array_equal(new.numpy(), old.numpy())


def test_any_step_function_with_its_state_type_runs_on_the_loops(rng):
    def half_step(current, state, params):
        v = 0.5 * state.v + current
        return tf.cast(v > 1.0, v.dtype), neurons.LIFState(v)

    currents = tf.constant(rng.normal(0.5, 0.5, (2, 6, 3)).astype(np.float32))
    out, (v,) = fused.fused_recurrence(half_step, neurons.LIFState, currents, [tf.zeros([2, 3])], (), time_axis=1)
    expected, state = [], np.zeros((2, 3), np.float32)
    for t in range(6):
        state = 0.5 * state + currents[:, t].numpy()
        expected.append(state > 1.0)
    np.testing.assert_array_equal(out.numpy(), np.stack(expected, axis=1).astype(np.float32))


def test_equal_block_steps_share_loops_and_the_shared_set_is_bounded(monkeypatch):
    model = neurons.get("cuba_lif")
    params = model.params_from({}, spike_fn=ds.Surrogate())
    first = fused.shared_step(fused.BlockStep(model, params, True))
    assert fused.shared_step(fused.BlockStep(model, params, True)) is first
    assert fused.shared_step(fused.BlockStep(model, params, False)) is not first
    monkeypatch.setattr(fused, "SHARED_STEPS", 3)
    for beta in (0.1, 0.2, 0.3, 0.4):
        fused.shared_step(fused.BlockStep(model, params._replace(beta=beta), True))
    assert fused.shared_step(fused.BlockStep(model, params, True)) is not first  # evicted


def test_compiled_loops_live_on_their_step_and_go_with_it(rng):
    step = TwoStateStep()
    currents = tf.constant(rng.normal(size=(4, 2, 3)))
    fused.compiled_recurrence(step, currents, [tf.zeros([2, 3], tf.float64)] * 2, [tf.ones(3, tf.float64)])
    forward = step._compiled_loops[True][0]
    assert forward.experimental_get_tracing_count() == 1
    released = weakref.ref(forward)
    del step, forward
    gc.collect()
    assert released() is None


def test_the_in_place_slice_update_of_the_batch_major_loops_has_a_gradient(rng):
    """TensorFlow registers none for XlaDynamicUpdateSlice; TensorFlow 2.6 needs it."""
    from tensorflow.compiler.tf2xla.python import xla

    x, update = tf.constant(rng.normal(size=(3, 5, 2))), tf.constant(rng.normal(size=(3, 1, 2)))
    weights = tf.constant(rng.normal(size=(3, 5, 2)))
    write = tf.function(lambda x, u: xla.dynamic_update_slice(x, u, [0, 2, 0]), jit_compile=True)
    with tf.GradientTape() as tape:
        tape.watch([x, update])
        loss = tf.reduce_sum(write(x, update) * weights)
    d_x, d_update = tape.gradient(loss, [x, update])
    expected = weights.numpy().copy()
    expected[:, 2] = 0
    np.testing.assert_array_equal(d_x.numpy(), expected)
    np.testing.assert_array_equal(d_update.numpy(), weights.numpy()[:, 2:3])
