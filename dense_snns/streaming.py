"""Streams: a model run over an input of any length, chunk by chunk, keeping only its states.

A stateful model (every layer that has states built with ``stateful=True`` and a fixed
batch size) continues each call where the last one ended, so chunks of a stream give the
result of one call on the whole sequence, in memory that does not grow with its length.
`stateful_copy` makes such a model from a trained one; `run_stream` runs it over chunks
from any iterable (a generator, a `tf.data.Dataset`: unbounded is fine), yielding each
chunk's outputs or reducing them over time on the fly:

    stream_model = stateful_copy(model, batch_size=1)
    for counts in run_stream(stream_model, chunks, reduce="sum", window=100):
        ...  # spike counts (or readout sums) of each window of 100 steps

With a reduction, the steps run in `StepLoop`: one compiled loop over the steps of a chunk
that runs every layer's step and keeps the states and the reduction only, no per-step output.
`get_states` / `set_states` / `reset_states` read, write and zero the states of a whole
model (pause, save, resume a stream; `keras.layers.RNN` layers included).
"""

from __future__ import annotations

import sys
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from .compat import custom_objects, is_functional, keras, tf_function
from .stateful import StatefulLayer

__all__ = [
    "REDUCTIONS",
    "StepLoop",
    "get_states",
    "load_states",
    "reset_states",
    "run_stream",
    "save_states",
    "set_states",
    "state_layers",
    "stateful_copy",
]

#: Reductions over time of `run_stream` and `StepLoop`.
REDUCTIONS = ("sum", "max", "mean", "last")

#: Layers that act on each step alone (on [batch, time, ...] as on every [batch, ...]).
_PER_STEP_LAYERS = ("Dense", "Activation", "Dropout", "ReLU", "Softmax", "LayerNormalization", "Rescaling")


# --------------------------------------------------------------------------------------------
# states of a whole model
# --------------------------------------------------------------------------------------------


def _walk(model, prefix: str = ""):
    """(path, layer) of every layer of `model`, nested models included."""
    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from _walk(layer, path + "/")
        else:
            yield path, layer


def _state_variables(layer) -> List:
    """The carried state variables of a stateful layer (none for any other layer)."""
    if isinstance(layer, StatefulLayer):
        return list(layer.state_variables) if layer.stateful else []
    if isinstance(layer, keras.layers.RNN) and layer.stateful:
        return [s for s in tf.nest.flatten(layer.states or []) if hasattr(s, "assign")]
    return []


def state_layers(model) -> Dict[str, object]:
    """{path: layer} of the layers of `model` that carry states across calls."""
    return {path: layer for path, layer in _walk(model) if _state_variables(layer)}


def reset_states(model) -> None:
    """Zero every carried state of `model` (a new, independent stream)."""
    for layer in state_layers(model).values():
        for variable in _state_variables(layer):
            variable.assign(tf.zeros_like(variable))


def get_states(model) -> Dict[str, List[np.ndarray]]:
    """{layer path: its carried states as NumPy arrays [batch, ...]} of a stateful model."""
    return {path: [v.numpy() for v in _state_variables(layer)] for path, layer in state_layers(model).items()}


def set_states(model, states: Dict[str, Sequence]) -> None:
    """Set the carried states of `model` (as `get_states` returns them). Everything is checked
    before anything is assigned: on an error no state has changed."""
    layers = state_layers(model)
    if set(states) != set(layers):
        raise ValueError(f"`states` must name the stateful layers {sorted(layers)}, got {sorted(states)}")
    pairs = []
    for path, layer in layers.items():
        variables = _state_variables(layer)
        values = [np.asarray(v) for v in states[path]]
        if len(values) != len(variables):
            raise ValueError(f"states[{path!r}] must hold {len(variables)} arrays, got {len(values)}")
        for i, (value, variable) in enumerate(zip(values, variables)):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"states[{path!r}][{i}] must have shape {tuple(variable.shape)}, got shape {value.shape}"
                )
            pairs.append((variable, value))
    for variable, value in pairs:
        variable.assign(tf.cast(value, variable.dtype))


def save_states(model, path) -> None:
    """Write the carried states of `model` to an ``.npz`` file (the states of the library's
    layers are also saved with the model; those of ``keras.layers.RNN`` layers are not)."""
    arrays = {f"{path_}:{i}": value for path_, values in get_states(model).items() for i, value in enumerate(values)}
    np.savez(path, **arrays)


def load_states(model, path) -> None:
    """Set the carried states of `model` from a file of `save_states` (checked as by
    `set_states`)."""
    states: Dict[str, List[np.ndarray]] = {}
    with np.load(path) as data:
        for key in sorted(data.files, key=lambda k: (k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1]))):
            states.setdefault(key.rsplit(":", 1)[0], []).append(data[key])
    set_states(model, states)


# --------------------------------------------------------------------------------------------
# a stateful copy of a model
# --------------------------------------------------------------------------------------------


def _is_shape(value) -> bool:
    return isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value)


def _with_batch(shape, batch_size: int, any_steps: bool):
    """A shape (or a list of shapes) with batch size `batch_size`, and with ``any_steps`` any
    number of steps (None on axis 1)."""
    if _is_shape(shape):
        shape = list(shape)
        if shape:
            shape[0] = batch_size
        if any_steps and len(shape) > 2:
            shape[1] = None
        return shape
    if isinstance(shape, (list, tuple)) and shape and all(_is_shape(s) for s in shape):
        return [_with_batch(s, batch_size, any_steps) for s in shape]
    return shape


#: Config keys of the model's input shapes ([batch, time, ...]: any number of steps in a
#: stream) and of build shapes (any rank: only the batch size changes).
_INPUT_SHAPE_KEYS = ("batch_shape", "batch_input_shape")
_BUILD_SHAPE_KEYS = ("build_input_shape", "input_shape")


def _stateful_config(config, batch_size: int):
    """The model config with ``stateful=True`` wherever a layer has the option, inputs of
    batch size `batch_size` and any number of steps, and build shapes of that batch size."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "stateful" and isinstance(value, bool):
                out[key] = True
            elif key in _INPUT_SHAPE_KEYS + _BUILD_SHAPE_KEYS and value is not None:
                out[key] = _with_batch(value, batch_size, key in _INPUT_SHAPE_KEYS)
            else:
                out[key] = _stateful_config(value, batch_size)
        return out
    if isinstance(config, list):
        return [_stateful_config(item, batch_size) for item in config]
    return config


def stateful_copy(model, batch_size: int):
    """A copy of `model` for streams: every layer with a `stateful` option stateful, inputs of
    batch size `batch_size` and any number of steps, the same weights.

    `model` must be a Sequential or functional model (its config is copied)."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got batch_size={batch_size!r}")
    if not is_functional(model):
        raise ValueError(
            f"stateful_copy needs a Sequential or functional model, got a {type(model).__name__}: build its layers "
            "with stateful=True instead"
        )
    config = model.get_config()
    config = _stateful_config(config, int(batch_size))
    copy = type(model).from_config(config, custom_objects=custom_objects())
    states = {id(v) for layer in state_layers(copy).values() for v in _state_variables(layer)}
    weights = [w for w in copy.weights if id(w) not in states]
    source = [w for w in model.weights if id(w) not in {id(v) for v in _all_states(model)}]
    if len(weights) != len(source):
        raise ValueError(f"the stateful copy has {len(weights)} weights, the model {len(source)}")
    for target, value in zip(weights, source):
        if tuple(target.shape) != tuple(value.shape):
            raise ValueError(
                f"weight {value.name}: shape {tuple(value.shape)} in the model, {tuple(target.shape)} in the copy"
            )
        target.assign(value)
    return copy


def _all_states(model) -> List:
    return [v for layer in state_layers(model).values() for v in _state_variables(layer)]


# --------------------------------------------------------------------------------------------
# the state-only loop
# --------------------------------------------------------------------------------------------


def _check_reduce(reduce) -> None:
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {REDUCTIONS}, got reduce={reduce!r}")


def _combine(reduce: str, acc, y):
    if reduce in ("sum", "mean"):
        return acc + y
    if reduce == "max":
        return tf.maximum(acc, y)
    return y  # last


def _reduce_over_time(reduce: str, outputs):
    """[batch, time, ...] -> [batch, ...] (the sum for "mean": divided by the count later)."""
    if reduce in ("sum", "mean"):
        return tf.reduce_sum(outputs, axis=1)
    if reduce == "max":
        return tf.reduce_max(outputs, axis=1)
    return outputs[:, -1]


def _as_lists(structure):
    """A nest of (tracked) lists and tuples as plain lists, for `tf.nest`."""
    if isinstance(structure, (list, tuple)):
        return [_as_lists(item) for item in structure]
    return structure


def _chain(model) -> List:
    """The layers of `model` in order, when each takes the previous one's output (else a
    ValueError saying why)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(model.inputs) > 1 and not _sparse_input(model):
        raise ValueError("the model has several inputs")
    if len(model.outputs) != 1:
        raise ValueError("the model has several outputs")
    previous = model.inputs
    for layer in layers:
        try:
            inputs = tf.nest.flatten(layer.input)
        except (AttributeError, ValueError, RuntimeError):
            raise ValueError(f"layer {layer.name!r} is called more than once") from None
        if [id(t) for t in inputs] != [id(t) for t in tf.nest.flatten(previous)]:
            raise ValueError(f"layer {layer.name!r} does not take the previous layer's output alone")
        previous = layer.output
    return layers


def _sparse_input(model) -> bool:
    return len(model.inputs) == 3


class StepLoop:
    """A chain model as one compiled loop over time that keeps the states and a reduction of
    the output over time, and no per-step output.

    Every layer runs its step: a stateful layer of the library its `step`, a stateful
    ``keras.layers.RNN`` its cell, a per-step layer (Dense, Activation, Dropout, ...) itself.

    Args:
        model: a stateful model (e.g. from `stateful_copy`) whose layers form a chain (each
            takes the previous one's output), every sequence layer returning sequences.
        reduce: ``"sum"``, ``"max"``, ``"mean"`` or ``"last"``.
        jit_compile: compile the loop with XLA; default: unless a layer is placed on several
            devices or asks for C++ kernels or the reference loop.

    ``loop(chunk, accumulator) -> accumulator`` runs the chunk [batch, time, ...] (sparse
    models: ``[ids, values, count]``) from the carried states, stores the final states and
    returns the accumulator updated with the chunk's outputs ([batch, ...] of the model's
    output; ``None`` starts a new one; "mean" accumulates the sum).
    """

    def __init__(self, model, reduce: str, jit_compile: Optional[bool] = None):
        _check_reduce(reduce)
        self.model = model
        self.reduce = reduce
        self.layers = _chain(model)
        self._kinds = [self._kind(layer) for layer in self.layers]
        if not any(kind in ("stateful", "rnn") for kind in self._kinds):
            raise ValueError("the model carries no states: make it with stateful_copy(model, batch_size)")
        if jit_compile is None:
            jit_compile = all(self._compiles(layer) for layer in self.layers)
        self.jit_compile = bool(jit_compile)
        self._run = tf_function(self._loop, jit_compile=self.jit_compile, reduce_retracing=True)

    @staticmethod
    def _kind(layer) -> str:
        if isinstance(layer, StatefulLayer):
            if not layer.stateful:
                raise ValueError(f"layer {layer.name!r} is not stateful: make the model with stateful_copy")
            if not getattr(layer, "return_sequences", True) or getattr(layer, "return_state", False):
                raise ValueError(f"layer {layer.name!r} must return sequences (and no states) to run step by step")
            return "stateful"
        if isinstance(layer, keras.layers.RNN):
            if not layer.stateful or not layer.return_sequences or layer.return_state:
                raise ValueError(f"RNN layer {layer.name!r} must be stateful and return sequences (no states)")
            return "rnn"
        name = type(layer).__name__
        if name == "SpikeMonitor":  # its rate metric and regularizer belong to training
            return "identity"
        if name in _PER_STEP_LAYERS or name in ("SparseToDense",):
            return "per_step"
        if name == "TimeDistributed":
            return "time_distributed"
        raise ValueError(f"layer {layer.name!r} ({name}) has no per-step form")

    @staticmethod
    def _compiles(layer) -> bool:
        if not getattr(layer, "jit_compile", True):
            return False
        if getattr(layer, "implementation", "auto") in ("kernel", "reference"):
            return False
        placement = getattr(getattr(layer, "cell", None), "placement", None)
        return not placement or len(set(placement.values())) <= 1

    def _states(self) -> List[List[tf.Tensor]]:
        return [[tf.convert_to_tensor(v) for v in _state_variables(layer)] for layer in self.layers]

    def _step(self, x_t, states):
        new_states = []
        for layer, kind, layer_states in zip(self.layers, self._kinds, states):
            if kind == "stateful":
                x_t, layer_states = layer.step(x_t, layer_states)
            elif kind == "rnn":  # a stack of cells takes its states nested, one list per cell
                nested = tf.nest.pack_sequence_as(_as_lists(layer.states), list(layer_states))
                x_t, layer_states = layer.cell.call(x_t, nested)
            elif kind == "time_distributed":
                x_t = layer.layer(x_t, training=False)
            elif kind == "identity":
                pass
            else:
                x_t = layer(x_t, training=False)
            new_states.append(
                [tf.cast(s, v.dtype) for s, v in zip(tf.nest.flatten(layer_states), _state_variables(layer))]
            )
        return x_t, new_states

    def _loop(self, chunk, accumulator):
        chunk = tf.nest.map_structure(tf.convert_to_tensor, chunk)
        steps = tf.shape(tf.nest.flatten(chunk)[0])[1]
        states = self._states()
        start = 0
        if accumulator is None:  # the first step's output starts it: no shape to know beforehand
            accumulator, states = self._step(tf.nest.map_structure(lambda x: x[:, 0], chunk), states)
            start = 1

        def body(t, states, accumulator):
            x_t = tf.nest.map_structure(lambda x: x[:, t], chunk)
            y_t, states = self._step(x_t, states)
            return t + 1, states, _combine(self.reduce, accumulator, tf.cast(y_t, accumulator.dtype))

        _, states, accumulator = tf.while_loop(lambda t, *_: t < steps, body, [tf.constant(start), states, accumulator])
        for layer, layer_states in zip(self.layers, states):
            for variable, state in zip(_state_variables(layer), layer_states):
                variable.assign(state)
        return accumulator

    def __call__(self, chunk, accumulator=None):
        return self._run(chunk, accumulator)


# --------------------------------------------------------------------------------------------
# the stream runner
# --------------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress display on stderr: steps, windows and steps per second."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.start = time.perf_counter()
        self.shown = 0.0

    def update(self, steps: int, windows: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.shown < 0.5:
            return
        self.shown = now
        rate = steps / max(now - self.start, 1e-9)
        text = f"\rstream: {steps:,} steps" + (f", {windows:,} windows" if windows else "") + f", {rate:,.0f} steps/s"
        sys.stderr.write(text + ("\n" if final else ""))
        sys.stderr.flush()


def _input_shapes(model) -> List[tuple]:
    return [tuple(t.shape) for t in model.inputs]


def _check_chunk(chunk, shapes, index: int):
    """The chunk as a list of tensors, after checking it against the model's inputs [batch,
    time, ...]: batch and feature sizes must be the stream's, the time steps may vary."""
    parts = list(chunk) if isinstance(chunk, (list, tuple)) else [chunk]
    if len(parts) != len(shapes):
        raise ValueError(f"chunk {index}: the model takes {len(shapes)} inputs, got {len(parts)}")
    tensors = []
    for part, expected in zip(parts, shapes):
        tensor = tf.convert_to_tensor(part)
        shape = tuple(tensor.shape)
        fits = len(shape) == len(expected) and all(
            e is None or i == 1 or s == e for i, (s, e) in enumerate(zip(shape, expected))
        )
        if not fits:
            raise ValueError(
                f"chunk {index} has shape {shape}, the stream takes {expected} (batch, any number of steps, "
                "features as carried in the states); the carried states are unchanged"
            )
        if shape[1] == 0:
            raise ValueError(f"chunk {index} has no time step (shape {shape})")
        tensors.append(tensor)
    return tensors


def _split(chunk: List[tf.Tensor], sizes: List[int]) -> List[List[tf.Tensor]]:
    """Cut a chunk along time into pieces of `sizes` steps."""
    if len(sizes) == 1:
        return [chunk]
    offsets = np.cumsum([0] + sizes)
    return [[t[:, a:b] for t in chunk] for a, b in zip(offsets[:-1], offsets[1:])]


def run_stream(
    model,
    chunks: Iterable,
    reduce: Optional[str] = None,
    window: Optional[int] = None,
    reset="stream",
    loop: str = "auto",
    progress: Optional[bool] = None,
) -> Iterator[np.ndarray]:
    """Run `model` over a stream of chunks, carrying only its states from chunk to chunk.

    Args:
        model: a stateful model (e.g. ``stateful_copy(model, batch_size)``): its outputs over
            the chunks are those of one call on their concatenation.
        chunks: an iterable of inputs [batch, time, ...] (``[ids, values, count]`` for a
            sparse model), e.g. a generator or a `tf.data.Dataset`, of any length; each chunk
            may have its own number of steps.
        reduce: None: yield each chunk's outputs [batch, time, ...]. ``"sum"`` (spike
            counts), ``"max"``, ``"mean"``, ``"last"``: reduce the output over time as the
            steps run; nothing per step is kept.
        window: with `reduce`: yield the reduction of each window of `window` steps when it is
            complete (chunks need not align with windows); None: the reduction since the
            start, after every chunk.
        reset: ``"stream"`` (default): zero the states first; ``"window"``: also at the start
            of every window (independent samples, one after another in the stream); False:
            continue from the states the model holds.
        loop: with `reduce`: ``"steps"`` (`StepLoop`: one compiled loop that keeps no
            per-step output), ``"chunks"`` (one call of the model per chunk, reduced at once:
            faster for dense synapses, memory of one chunk's outputs) or ``"auto"`` (steps
            when the model is a chain of layers with a per-step form, else chunks).
        progress: show steps and steps per second on stderr; default: when stderr is a
            terminal.

    Yields: NumPy arrays: each chunk's outputs, or reductions [batch, ...] of the model's
    output (per window, or since the start).
    """
    if not state_layers(model):
        raise ValueError(
            "the model carries no states: run a stateful copy, run_stream(stateful_copy(model, batch_size), ...)"
        )
    if reduce is not None:
        _check_reduce(reduce)
    if window is not None and (reduce is None or not isinstance(window, (int, np.integer)) or window <= 0):
        raise ValueError(f"`window` must be a positive integer of steps, with a `reduce`; got window={window!r}")
    if reset not in ("stream", "window", False):
        raise ValueError(f"`reset` must be 'stream', 'window' or False, got reset={reset!r}")
    if reset == "window" and window is None:
        raise ValueError("reset='window' needs a `window`")
    if loop not in ("auto", "steps", "chunks"):
        raise ValueError(f"`loop` must be 'auto', 'steps' or 'chunks', got loop={loop!r}")
    if progress is None:
        progress = sys.stderr.isatty()
    return _stream(model, chunks, reduce, window, reset, loop, _Progress(bool(progress)))


def _compiled(model, key, make):
    """The function `make()` for `key`, made once per model: the next stream of the same model
    runs without tracing and compiling again. Kept on the model, out of Keras's tracking."""
    cache = model.__dict__.get("_stream_functions")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_stream_functions", cache)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _stream(model, chunks, reduce, window, reset, loop, progress):
    shapes = _input_shapes(model)
    call = _compiled(
        model,
        "call",
        lambda: tf_function(lambda x: model(x if len(x) > 1 else x[0], training=False), reduce_retracing=True),
    )
    step_loop = None
    if reduce is not None and loop != "chunks":
        try:
            step_loop = _compiled(model, ("steps", reduce), lambda: StepLoop(model, reduce))
        except ValueError as err:
            if loop == "steps":
                raise ValueError(f"loop='steps': {err}") from None

    def call_and_reduce(x, accumulator):
        outputs = model(x if len(x) > 1 else x[0], training=False)
        if isinstance(outputs, (list, tuple)):
            raise ValueError("`reduce` needs a model with one output [batch, time, ...]")
        reduced = _reduce_over_time(reduce, outputs)
        return reduced if accumulator is None else _combine(reduce, accumulator, reduced)

    if step_loop is None and reduce is not None:
        reduce_call = _compiled(model, ("chunks", reduce), lambda: tf_function(call_and_reduce, reduce_retracing=True))

    def run_piece(piece, accumulator):
        if step_loop is not None:
            return step_loop(piece if len(piece) > 1 else piece[0], accumulator)
        return reduce_call(piece, accumulator)

    if reset:
        reset_states(model)
    steps = windows = 0
    accumulator, in_window = None, 0
    for index, chunk in enumerate(chunks):
        chunk = _check_chunk(chunk, shapes, index)
        length = int(chunk[0].shape[1])
        if reduce is None:
            outputs = call(chunk)
            steps += length
            progress.update(steps, 0)
            yield tf.nest.map_structure(lambda t: t.numpy(), outputs)
            continue
        sizes = []
        remaining = length
        while remaining:
            size = remaining if window is None else min(remaining, window - in_window)
            sizes.append(size)
            remaining -= size
            in_window = 0 if window is None else (in_window + size) % window
        for piece in _split(chunk, sizes):
            size = int(piece[0].shape[1])
            if window is not None and reset == "window" and steps % window == 0:
                reset_states(model)
            accumulator = run_piece(piece, accumulator)
            steps += size
            if window is not None and steps % window == 0:
                windows += 1
                yield _finish(reduce, accumulator, window)
                accumulator = None
        progress.update(steps, windows)
        if window is None:
            yield _finish(reduce, accumulator, steps)
    progress.update(steps, windows, final=True)


def _finish(reduce: str, accumulator, count: int) -> np.ndarray:
    """The reduction as a NumPy array ("mean": the sum over `count` steps divided)."""
    value = accumulator.numpy()
    return value / count if reduce == "mean" else value
