"""Xception on TensorFlow: float32 as TensorFlow ops with BatchNormalization folded
(``fused.folded_inference``), bfloat16 as the Keras model under mixed precision, and the runtime
that reads every Keras weights format.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import numpy as np

from ..keras_import import import_keras
from ..logs import verbose
from .network import Network, NetworkSpec, weight_arrays

_TF_READY = False


def _enable_onednn() -> None:
    """Use oneDNN kernels unless the user chose otherwise (``TF_ENABLE_ONEDNN_OPTS=0``).

    TensorFlow turns them on by default only on CPUs with AVX-512 VNNI/BF16 or AMX; on AVX2
    machines they still make Xception's convolutions about 1.3x faster. Only effective before
    TensorFlow is first imported.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras without the C++ start-up chatter on stderr.

    TensorFlow's CUDA probing logs through absl before any log level applies, so stderr (fd 2)
    is pointed at /dev/null while TensorFlow loads and enumerates devices, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says (it does not reach those lines). ``-v`` (``logs.verbose()``,
    or ``XCEPTION_DEBUG``) keeps everything visible.
    """
    global _TF_READY
    if _TF_READY:
        return
    if verbose():
        _enable_onednn()
        import_keras()
        _TF_READY = True
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # a level the user chose holds after the start
    sys.stderr.flush()
    _enable_onednn()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import_keras()
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    _TF_READY = True


def keras_inference(model) -> Callable[[np.ndarray], np.ndarray]:
    """``model(x, training=False)`` compiled once (a ``tf.function`` with a fixed input signature),
    as ``f(float32 batch) -> float32 outputs``; other backends use ``predict_on_batch``."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda x: np.asarray(model.predict_on_batch(x), dtype=np.float32)
    import tensorflow as tf

    size = int(model.input.shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def infer(x):
        return tf.cast(model(x, training=False), tf.float32)

    return lambda x: infer(x).numpy()


def load(spec: NetworkSpec, precision: str, keras_model: Callable[[], object] | None) -> Network:
    """The network on TensorFlow. ``keras_model()`` gives the loaded Keras model when one is needed
    (Keras weight formats, bfloat16, or a Keras backend other than TensorFlow)."""
    t0 = time.perf_counter()
    import_tensorflow_quietly()
    import keras

    timings = {"import_s": time.perf_counter() - t0}
    folded = precision == "float32" and keras.backend.backend() == "tensorflow"
    if folded:
        from ..fused import folded_inference, model_weights

        t1 = time.perf_counter()
        if spec.weights.format in ("random", "legacy-h5"):  # read straight from the file: no Keras model
            weights = weight_arrays(spec)
        else:
            weights = model_weights(_need(keras_model)())
        timings["read_weights_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        fn = folded_inference(weights, spec.include_top, spec.pooling, spec.input_size)
        timings["build_s"] = time.perf_counter() - t2
    else:
        t1 = time.perf_counter()
        fn = keras_inference(_need(keras_model)())
        timings["build_s"] = time.perf_counter() - t1
    import tensorflow as tf

    return Network(infer=fn, runtime="tensorflow", version=tf.__version__, precision=precision, timings=timings)


def _need(keras_model):
    if keras_model is None:
        raise ValueError("the TensorFlow runtime needs the Keras model for these weights or this precision")
    return keras_model
