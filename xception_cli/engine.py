"""The process-wide model: weights found once, runtime chosen once, network loaded lazily.

``get_engine(...)`` returns the shared ``Engine`` for a configuration; ``predict`` and
``benchmark`` go through it, so a process never builds the same network twice.

- ``engine.weights_source``: ``--weights`` resolved once (env var, Keras cache, download, path).
- ``engine.info``: what that file says (class names, the resize it was made with), asked of
  ``weights.describe`` once; ``engine.class_names`` and ``engine.resize`` read it.
- ``engine.runtime``: chosen once by ``runtimes.choose_runtime`` (``auto``: OpenVINO whenever it
  can read the weights format).
- ``engine.network`` / ``engine.infer``: the loaded network and its ``f(batch) -> outputs``. On
  OpenVINO, a network compiled by an earlier run for the same weights file and settings comes
  from the user's cache (``runtimes.cache``; ``cache=False`` or ``--no-cache``: built here).
- ``engine.model``: the Keras model (reference, Keras formats, training), built
  only when something asks for it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import config
from .model import validate_input_shape
from .runtimes import PRECISIONS, Network, NetworkSpec, choose_runtime, load_network, requested_runtime
from .weights import (
    RANDOM,
    WeightsError,
    WeightsInfo,
    WeightsSource,
    describe,
    metadata_path,
    normalize_weights,
    weights_source,
)

_POLICY = {"float32": None, "bfloat16": "mixed_bfloat16"}


@dataclass
class Engine:
    """One network configuration: weights, head, size, precision and runtime, loaded lazily."""

    weights: str | os.PathLike | None = "imagenet"
    include_top: bool = True
    precision: str = "float32"
    input_size: int = config.IMAGENET_INPUT_SIZE
    pooling: str | None = None
    runtime_request: str | None = None  # auto | openvino | tensorflow; None: $XCEPTION_RUNTIME or auto
    initialize: bool = True  # random weights (seeded, the same on every runtime) when no file is given
    threads: int | None = None  # inference threads (OpenVINO); None: every core
    cache: bool | None = None  # the compiled network from/to the user's cache; None: unless --no-cache (usercache)
    progress: Callable[[int, int | None], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        self.weights = normalize_weights(self.weights)
        self.runtime_request = requested_runtime(self.runtime_request)
        validate_input_shape((self.input_size, self.input_size, 3),
                             imagenet_top=self.include_top and self.weights != RANDOM)
        self._lock = threading.RLock()
        self._source: WeightsSource | None = None
        self._info: WeightsInfo | None = None
        self._runtime: str | None = None
        self._network: Network | None = None
        self._model = None
        self.timings: dict[str, float] = {}

    # -- decisions, each made once --------------------------------------------------------------

    @property
    def weights_source(self) -> WeightsSource:
        with self._lock:
            if self._source is None:
                t0 = time.perf_counter()
                self._source = weights_source(self.weights, include_top=self.include_top, progress=self.progress)
                self.timings["resolve_weights_s"] = time.perf_counter() - t0
            return self._source

    @property
    def runtime(self) -> str:
        with self._lock:
            if self._runtime is None:
                self._runtime = choose_runtime(self.runtime_request, self.weights_source.format,
                                               precision=self.precision)
            return self._runtime

    @property
    def info(self) -> WeightsInfo:
        """What the weights file says (format, class names, preprocessing), read once."""
        with self._lock:
            if self._info is None:
                self._info = describe(self.weights_source)
            return self._info

    @property
    def class_names(self) -> list[str] | None:
        """Your own classes, for a model from ``xception train`` (or an IR exported from one);
        ``None`` for ImageNet."""
        names = self.info.class_names if self.include_top else None
        return list(names) if names else None

    @property
    def resize(self) -> str:
        """The resize mode the weights were made with (``xception train --resize``), else center-crop:
        what images get unless the caller asks otherwise."""
        return self.info.resize_for(None)

    # -- realisations ---------------------------------------------------------------------------

    @property
    def network(self) -> Network:
        """The network on the chosen runtime, loaded on first access."""
        with self._lock:
            if self._network is None:
                spec = NetworkSpec(self.weights_source, self.include_top, None if self.include_top else self.pooling,
                                   self.input_size, self.precision, self.threads, cache=self.cache is not False)
                t0 = time.perf_counter()
                network = load_network(spec, self.runtime, keras_model=lambda: self.model)
                self._check_labels(network)
                self._network = network
                self.timings["load_network_s"] = time.perf_counter() - t0
            return self._network

    def _check_labels(self, network: Network) -> None:
        """An IR's labels come from its metadata file: they must be one per output of the IR itself."""
        names = self.class_names
        if not names or self.weights_source.format != "openvino-ir":
            return
        outputs = network.handle.output(0).get_partial_shape()[-1]
        if outputs.is_static and outputs.get_length() != len(names):
            raise WeightsError(f"{metadata_path(self.weights_source.path)}: {len(names)} labels for the IR's "
                               f"{outputs.get_length()} outputs: not the metadata of this model")

    @property
    def infer(self) -> Callable[[np.ndarray], np.ndarray]:
        """``f(batch) -> outputs``: float32 ``(N, H, W, 3)`` in ``[-1, 1]`` to float32 outputs."""
        return self.network.infer

    @property
    def model(self):
        """The Keras model with the engine's weights, built on first access (imports TensorFlow)."""
        with self._lock:
            if self._model is None:
                self._model = self._build_keras()
            return self._model

    def _build_keras(self):
        from .model import build_xception
        from .runtimes.tensorflow import import_tensorflow_quietly
        from .weights import assign_by_order, load_weights, random_weights

        source = self.weights_source
        t0 = time.perf_counter()
        import_tensorflow_quietly()
        t1 = time.perf_counter()
        names = self.class_names
        model = build_xception(
            include_top=self.include_top, input_shape=(self.input_size, self.input_size, 3),
            pooling=None if self.include_top else self.pooling, dtype_policy=_POLICY[self.precision],
            initialize=False,  # zeros: weights are assigned next (or the model is only inspected)
            classes=len(names) if names else config.IMAGENET_CLASSES,
        )
        t2 = time.perf_counter()
        if source.path is not None:
            load_weights(model, source.path)
        elif self.initialize:  # the same seeded NumPy weights as every other runtime
            assign_by_order(model, list(random_weights(self.include_top).items()), "random weights")
        t3 = time.perf_counter()
        self.timings.update(keras_import_s=t1 - t0, keras_build_s=t2 - t1, keras_load_weights_s=t3 - t2)
        return model

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        self._check_shape(batch)
        return self.infer(batch)

    def infer_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """The outputs for a batch of uint8 RGB pixels ``(N, size, size, 3)``, as ``preprocess.load_image``
        gives them: fed as they are to a network that scales them itself (an IR exported with uint8
        input: no conversion on the way in either direction), else scaled to ``[-1, 1]`` here."""
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
        self._check_shape(pixels)
        network = self.network
        if network.takes_pixels:
            return network.infer(np.ascontiguousarray(pixels))
        from .preprocess import to_input

        return network.infer(to_input(pixels))

    def _check_shape(self, batch: np.ndarray) -> None:
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected a batch of shape (N, {self.input_size}, {self.input_size}, 3), got {batch.shape}"
            )


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
    runtime: str | None = None,
) -> Engine:
    """The process-wide ``Engine`` for this configuration (created lazily, then reused)."""
    key = (normalize_weights(weights), include_top, precision, input_size, pooling, initialize,
           requested_runtime(runtime), _file_identity(weights))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = Engine(
                weights=key[0], include_top=include_top, precision=precision, input_size=input_size,
                pooling=pooling, runtime_request=key[6], initialize=initialize, progress=progress,
            )
            _ENGINES[key] = engine
    return engine


def _file_identity(weights) -> tuple | None:
    """A weights file as it is now (a file rewritten in place, e.g. trained again to the same
    name, is another network); ``None`` for anything that is not a file here."""
    try:
        st = os.stat(weights) if weights is not None else None
    except (OSError, TypeError, ValueError):
        return None
    return None if st is None else (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def clear_engines() -> None:
    """Forget every shared engine (tests; freeing memory in long-lived processes)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()
