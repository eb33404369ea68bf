"""One place that hides the Keras 2 / Keras 3 differences the library meets.

`tf.keras` is Keras 3 on TensorFlow >= 2.16, Keras 2 (`tf_keras`) when
`TF_USE_LEGACY_KERAS=1`, and Keras 2.6 on Graphcore's TensorFlow. Library code imports
`keras` from here; the differences it meets are handled here (registration, output shapes,
per-layer metrics, functional models). Elsewhere only a cell's `get_initial_state` takes
both signatures.
"""

from __future__ import annotations

import inspect

import tensorflow as tf

keras = tf.keras

#: True under Keras 3 (it has the backend-agnostic `keras.ops` namespace; Keras 2 has not).
KERAS_3 = hasattr(keras, "ops")


def _keras_version() -> str:
    if hasattr(keras, "version"):
        return keras.version()
    if hasattr(keras, "__version__"):
        return keras.__version__
    try:  # tf_keras behind tf.keras exposes no version attribute
        import tf_keras

        return tf_keras.__version__
    except ImportError:
        return "2 (unknown)"


#: Version string of the Keras behind `tf.keras`.
KERAS_VERSION = _keras_version()

#: (major, minor) of TensorFlow.
TF_VERSION = tuple(int(part) for part in tf.__version__.split(".")[:2])


def convolution(conv, inputs):
    """The convolution of the Keras conv layer `conv` without its bias (its
    `convolution_op`; Keras 2.6, Graphcore's base, has none: the same `tf.nn.convolution`)."""
    kernel = tf.cast(conv.kernel, inputs.dtype)
    if hasattr(conv, "convolution_op"):
        return conv.convolution_op(inputs, kernel)
    if conv.data_format != "channels_last":
        raise ValueError(f"layer {conv.name!r}: only data_format='channels_last' is supported here")
    return tf.nn.convolution(
        inputs,
        kernel,
        strides=list(conv.strides),
        padding=conv.padding.upper(),
        dilations=list(conv.dilation_rate),
    )


def numpy_function(fn, inputs, dtype, stateful: bool = True):
    """`tf.numpy_function`; older TensorFlow (2.6, Graphcore's base) has no `stateful`
    argument and treats every such function as stateful."""
    if "stateful" in inspect.signature(tf.numpy_function).parameters:
        return tf.numpy_function(fn, inputs, dtype, stateful=stateful)
    return tf.numpy_function(fn, inputs, dtype)


def _has_keras_format() -> bool:
    if KERAS_3:
        return True
    try:
        return tuple(int(part) for part in KERAS_VERSION.split(".")[:2]) >= (2, 12)
    except ValueError:  # an unknown Keras 2 version string: a recent tf_keras
        return True


#: Keras 3 and Keras 2 from 2.12 save the single-file .keras format; Keras 2.6 (Graphcore's
#: base) reads a .keras suffix as HDF5, which takes functional and Sequential models only.
HAS_KERAS_FORMAT = _has_keras_format()


def model_file(path: str, model) -> str:
    """Where to save `model` meant for `path` (``*.keras``): `path` itself, or for a
    subclassed model (EProp) where Keras has no .keras format, the SavedModel directory of
    that name without the suffix."""
    path = str(path)
    if path.endswith(".keras") and not HAS_KERAS_FORMAT and not is_functional(model):
        return path[: -len(".keras")]
    return path


def set_random_seed(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's generators (`keras.utils.set_random_seed`,
    which Keras 2.6, Graphcore's base, lacks)."""
    if hasattr(keras.utils, "set_random_seed"):
        keras.utils.set_random_seed(seed)
        return
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def stop_recording():
    """A context in which no gradient tape records (TensorFlow's own; not in its public API).
    `tf.stop_gradient` does not do this in eager mode on TensorFlow 2.6 (Graphcore's base):
    its outputs stay watched there."""
    try:
        from tensorflow.python.eager.record import stop_recording as stop
    except ImportError:  # TensorFlow before 2.13
        from tensorflow.python.eager.tape import stop_recording as stop
    return stop()


def tape_recording() -> bool:
    """Whether a gradient tape is active (TensorFlow's own; not in its public API)."""
    try:
        from tensorflow.python.eager.record import could_possibly_record
    except ImportError:  # TensorFlow before 2.13
        from tensorflow.python.eager.tape import could_possibly_record
    return could_possibly_record()


def tf_function(fn, jit_compile=None, reduce_retracing: bool = False):
    """`tf.function(fn, jit_compile=..., reduce_retracing=...)`; TensorFlow before 2.9 (2.6,
    Graphcore's base) names `reduce_retracing` `experimental_relax_shapes`."""
    kwargs = {} if jit_compile is None else {"jit_compile": jit_compile}
    if reduce_retracing:
        kwargs["reduce_retracing" if TF_VERSION >= (2, 9) else "experimental_relax_shapes"] = True
    return tf.function(fn, **kwargs)


PACKAGE = "dense_snns"


_REGISTERED = {}


def register(package: str = PACKAGE):
    """Class decorator registering a Keras-serialisable object under `package`."""
    keras_register = keras.utils.register_keras_serializable(package=package)

    def decorate(cls):
        _REGISTERED[cls.__name__] = cls
        return keras_register(cls)

    return decorate


def custom_objects() -> dict:
    """{class name: class} of every Keras object of the library (layers, cells, losses, ...).

    Keras finds them by their registered names (``"dense_snns>LIF"``) without help, except
    in one case: Keras 2 (tf_keras) reads the cell of a ``keras.layers.RNN`` in an ``.h5``
    file by its bare class name. Pass ``custom_objects=custom_objects()`` to
    ``keras.models.load_model`` there.
    """
    return dict(_REGISTERED)


def output_shape(shape):
    """A layer's output shape as `compute_output_shape` returns it: a tuple on Keras 3, a
    `tf.TensorShape` on Keras 2 (a list of shapes for several outputs)."""
    if isinstance(shape, list):
        return [output_shape(s) for s in shape]
    return tuple(shape) if KERAS_3 else tf.TensorShape(shape)


def is_functional(model) -> bool:
    """Whether `model` is a Sequential or functional model (a graph of layers that its config
    rebuilds), not a subclassed one. Both Keras versions name the class of functional models
    `Functional`; a Keras 3 Sequential model is not one of them."""
    return isinstance(model, keras.Sequential) or any(cls.__name__ == "Functional" for cls in type(model).__mro__)


def add_layer_metric(layer, metric_name: str, value):
    """Report `value` (a scalar) as a running-mean metric named `metric_name` in `fit` logs.

    Keras 2 has `Layer.add_metric`; Keras 3 removed it but collects `keras.metrics.Metric`
    objects tracked as layer attributes, so a per-layer `Mean` metric is created lazily.
    """
    if not KERAS_3:
        layer.add_metric(value, name=metric_name)
        return
    metric = layer._dense_snns_metrics.get(metric_name) if hasattr(layer, "_dense_snns_metrics") else None
    if metric is None:
        raise RuntimeError(f"metric {metric_name!r} was not declared by layer {layer.name!r} in its constructor")
    metric.update_state(value)


def declare_layer_metric(layer, metric_name: str) -> None:
    """Create the Keras 3 metric object that `add_layer_metric` updates (no-op on Keras 2)."""
    if not KERAS_3:
        return
    if not hasattr(layer, "_dense_snns_metrics"):
        layer._dense_snns_metrics = {}
    metric = keras.metrics.Mean(name=metric_name)
    layer._dense_snns_metrics[metric_name] = metric
    # An attribute assignment is what makes Keras 3 track the metric on the layer.
    setattr(layer, "_metric_" + metric_name, metric)
