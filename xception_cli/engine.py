"""The process-wide model: weights found once, one compiled inference function, built lazily.

``get_engine(...)`` returns the shared ``Engine`` for a configuration; ``predict``, ``summary``
and ``benchmark`` all go through it, so a process never builds the same network twice.
``engine.infer`` is the compiled inference function (float32: ``fused.folded_inference``, read
straight from an official-format file without building the Keras model); ``engine.model`` is the
Keras model, built on first access.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import config
from .model import build_xception, validate_input_shape, weight_layout
from .weights import is_legacy_h5, load_weights, read_for_layout, resolve_weights

PRECISIONS = ("float32", "bfloat16")
_POLICY = {"float32": None, "bfloat16": "mixed_bfloat16"}


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
    is pointed at /dev/null while TensorFlow loads and enumerates devices. Setting
    ``TF_CPP_MIN_LOG_LEVEL`` yourself (or ``XCEPTION_DEBUG``) keeps everything visible.
    """
    global _TF_READY
    if _TF_READY:
        return
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or os.environ.get("XCEPTION_DEBUG"):
        _enable_onednn()
        import keras  # noqa: F401

        _TF_READY = True
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    _enable_onednn()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    _TF_READY = True


@dataclass
class Engine:
    """One built network with its weights and a compiled batch-inference function."""

    weights: str | None = "imagenet"
    include_top: bool = True
    precision: str = "float32"
    input_size: int = config.IMAGENET_INPUT_SIZE
    pooling: str | None = None
    initialize: bool = True  # random initial weights when no weights file is loaded
    progress: Callable[[int, int | None], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        imagenet_top = self.include_top and self.weights is not None and str(self.weights).lower() != "none"
        validate_input_shape((self.input_size, self.input_size, 3), imagenet_top=imagenet_top)
        self._model = None
        self._fn = None
        self._lock = threading.Lock()
        self._resolved = False
        self.weights_path = None
        self.timings: dict[str, float] = {}

    @property
    def model(self):
        """The Keras model, built (and its weights loaded) on first access."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._build()
        return self._model

    def _resolve(self):
        """The weights file to load (or ``None``), found once: env var, Keras cache or download."""
        if not self._resolved:
            t0 = time.perf_counter()
            self.weights_path = resolve_weights(self.weights, include_top=self.include_top, progress=self.progress)
            self.timings["resolve_weights_s"] = time.perf_counter() - t0
            self._resolved = True
        return self.weights_path

    def _build(self) -> None:
        path = self._resolve()
        t_resolved = time.perf_counter()
        import_tensorflow_quietly()
        t1 = time.perf_counter()
        model = build_xception(
            include_top=self.include_top,
            input_shape=(self.input_size, self.input_size, 3),
            pooling=None if self.include_top else self.pooling,
            dtype_policy=_POLICY[self.precision],
            initialize=self.initialize and path is None,  # a weights file overwrites them anyway
        )
        t2 = time.perf_counter()
        if path is not None:
            load_weights(model, path)
        t3 = time.perf_counter()
        self.timings.update(import_s=t1 - t_resolved, build_s=t2 - t1, load_weights_s=t3 - t2)
        self._model = model

    def _compile(self):
        import_tensorflow_quietly()
        import keras

        if keras.backend.backend() == "tensorflow" and self.precision == "float32":
            from .fused import folded_inference, model_weights

            # The same graph as TensorFlow ops with BatchNormalization folded into the
            # convolutions (~6% faster). With a legacy .h5 file (the official format) the Keras
            # model is not even built: the file is checked against the layout and read directly.
            # The weights are read once: later changes to self.model are not seen.
            path = self._resolve()
            if self._model is None and path is not None and is_legacy_h5(path):
                t0 = time.perf_counter()
                weights = read_for_layout(path, weight_layout(self.include_top))
                self.timings["read_weights_s"] = time.perf_counter() - t0
            else:
                weights = model_weights(self.model)
            return folded_inference(weights, self.include_top, self.pooling, self.input_size)
        return keras_inference(self.model)

    @property
    def infer(self) -> Callable[[np.ndarray], np.ndarray]:
        """``f(batch) -> outputs``: float32 ``(N, H, W, 3)`` in ``[-1, 1]`` to float32 outputs."""
        if self._fn is None:
            fn = self._compile()
            with self._lock:
                if self._fn is None:
                    self._fn = fn
        return self._fn

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected a batch of shape (N, {self.input_size}, {self.input_size}, 3), got {batch.shape}"
            )
        return self.infer(batch)


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


_ENGINES: dict[tuple, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(
    weights: str | os.PathLike | None = "imagenet",
    include_top: bool = True,
    precision: str = "float32",
    input_size: int = config.IMAGENET_INPUT_SIZE,
    pooling: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    initialize: bool = True,
) -> Engine:
    """The process-wide ``Engine`` for this configuration (created lazily, then reused)."""
    key = (None if weights is None else str(weights), include_top, precision, input_size, pooling, initialize)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = Engine(
                weights=key[0], include_top=include_top, precision=precision,
                input_size=input_size, pooling=pooling, progress=progress, initialize=initialize,
            )
            _ENGINES[key] = engine
    return engine


def architecture(input_size: int = config.IMAGENET_INPUT_SIZE):
    """A built Xception of this input size, for inspection (``summary``); values are irrelevant.

    Reuses any engine already built in this process with the same shape (the ImageNet top is
    included at 299x299 only); otherwise builds a shared one without random initialisation.
    """
    include_top = input_size == config.IMAGENET_INPUT_SIZE
    with _ENGINES_LOCK:
        for e in _ENGINES.values():
            if e._model is not None and (e.input_size, e.include_top, e.pooling) == (input_size, include_top, None):
                return e.model
    return get_engine(weights="none", include_top=include_top, input_size=input_size, initialize=False).model


def clear_engines() -> None:
    """Forget every shared engine (tests; freeing memory in long-lived processes)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()
