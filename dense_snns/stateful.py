"""States carried across calls: what every stateful layer of the library shares.

A layer built with ``stateful=True`` keeps the states its last call ended with in
non-trainable variables of shape [batch, ...] (saved with the model) and starts its next call
from them, so a stream can be fed chunk by chunk with the result of one call on the whole
sequence. `reset_states()` zeroes them (a new, independent stream), `get_states()` and
`set_states()` read and write them as NumPy arrays (pause, save, resume a stream).
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np
import tensorflow as tf

__all__ = ["StatefulLayer"]


class StatefulLayer:
    """Mixin of a Keras layer with a `stateful` option (set `self.stateful` in its constructor,
    call `_build_states` in `build`, `_carried_states` and `_carry_states` in `call`).

    The layer also gives its per-step form, ``step(inputs_t, states) -> (output_t,
    new_states)`` with states laid out as `state_variables`, which `dense_snns.streaming`
    runs in a loop that keeps no per-step output."""

    stateful: bool = False

    @property
    def _what(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    def _build_states(self, batch, shapes: Sequence[Sequence[int]]) -> None:
        """Create the carried states, one [batch] + shape variable per entry of `shapes`."""
        self.state_variables = []
        if not self.stateful:
            return
        if batch is None:
            raise ValueError(
                f"{self._what}: stateful=True needs a fixed batch size: give the Input a batch_size "
                "(e.g. keras.Input(shape, batch_size=32))"
            )
        self.state_variables = [
            self.add_weight(name=f"state_{i}", shape=(int(batch),) + tuple(shape), initializer="zeros", trainable=False)
            for i, shape in enumerate(shapes)
        ]

    def _require_stateful(self) -> None:
        if not self.stateful or not getattr(self, "state_variables", None):
            raise ValueError(f"{self._what} carries no states: build it with stateful=True (and call it once)")

    def reset_states(self) -> None:
        """Zero the carried states (a new, independent stream)."""
        for variable in getattr(self, "state_variables", []):
            variable.assign(tf.zeros_like(variable))

    def get_states(self) -> List[np.ndarray]:
        """The carried states as NumPy arrays [batch, ...]."""
        self._require_stateful()
        return [v.numpy() for v in self.state_variables]

    def set_states(self, states: Sequence) -> None:
        """Set the carried states (as `get_states` returns them); nothing is changed when one
        does not fit (the error names its shape and the expected one)."""
        self._require_stateful()
        states = [np.asarray(s) for s in states]
        if len(states) != len(self.state_variables):
            raise ValueError(f"{self._what}: `states` must hold {len(self.state_variables)} arrays, got {len(states)}")
        for i, (value, variable) in enumerate(zip(states, self.state_variables)):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"{self._what}: `states[{i}]` must have shape {tuple(variable.shape)}, got shape {value.shape}"
                )
        for value, variable in zip(states, self.state_variables):
            variable.assign(tf.cast(value, variable.dtype))

    def _carried_states(self, batch, dtype, inputs_shape=None) -> List[tf.Tensor]:
        """The carried states in `dtype`, after checking the batch size of the call (`batch`:
        static or None; `inputs_shape` for the message)."""
        carried = int(self.state_variables[0].shape[0])
        if batch is not None and int(batch) != carried:
            shape = "" if inputs_shape is None else f" (shape {tuple(inputs_shape)})"
            raise ValueError(
                f"{self._what}: stateful with states of batch size {carried} (shape "
                f"{tuple(self.state_variables[0].shape)}), got `inputs` of batch size {int(batch)}{shape}; "
                "the carried states are unchanged"
            )
        # read as tensors: a same-dtype cast may return the variable itself (TF 2.6), which a
        # custom gradient would then treat as a captured variable, not as an input
        return [tf.cast(tf.convert_to_tensor(v), dtype) for v in self.state_variables]

    @staticmethod
    def _step_states(states, dtype) -> List[tf.Tensor]:
        """The states given to `step` (as `state_variables`: float32 under a mixed-precision
        policy) in the step's compute `dtype`."""
        return [tf.cast(s, dtype) for s in states]

    @staticmethod
    def _in_given_dtypes(new_states, states) -> List[tf.Tensor]:
        """`step`'s new states in the dtypes of the states it was given, so that a loop
        carrying them (`dense_snns.streaming`) keeps its dtypes."""
        return [tf.cast(new, tf.as_dtype(old.dtype)) for new, old in zip(new_states, states)]

    def _carry_states(self, final_states) -> None:
        for variable, state in zip(self.state_variables, final_states):
            variable.assign(tf.cast(state, variable.dtype))
