"""The Python API: ``Classifier(weights=...).predict(paths_or_arrays, top_k=5)`` and
``Embedder(weights=...).embed(paths_or_arrays)``; both run the same pipeline, each with its head."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import replace

import numpy as np

from . import config
from .config import RESIZE_MODES
from .engine import get_engine
from .heads import Classify, Embed
from .pipeline import Decoder, Record, Stats, run_stream


class _ImageModel:
    """Images in, records out, over the shared engine the head needs."""

    def __init__(self, head, weights="imagenet", resize=None, precision="float32", batch_size=8,
                 workers=None, progress=None, runtime=None):
        if resize is not None and resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.head = head
        self.engine = get_engine(weights=weights, include_top=head.include_top, pooling=head.pooling,
                                 precision=precision, progress=progress, runtime=runtime)
        self._resize = resize
        self.batch_size = batch_size
        self.workers = workers
        self.size = config.IMAGENET_INPUT_SIZE

    @property
    def resize(self) -> str:
        """The resize mode asked for, else the one the weights were made with, else center-crop."""
        return self._resize or self.engine.resize

    def load(self):
        """Find and load the weights and compile inference now (otherwise done on first use)."""
        _ = self.engine.network
        return self

    @property
    def notes(self) -> list[str]:
        """One-line warnings about how the network runs (e.g. bfloat16 asked, float32 run)."""
        return list(self.engine.network.notes)

    def decoder(self, items: Iterable[tuple[str, object]]) -> Decoder:
        """Start decoding ``(name, source)`` pairs now (e.g. while the model loads); pass it to ``stream``."""
        return Decoder(items, size=self.size, resize=self.resize, workers=self.workers)

    def _stream(self, items, head, stats) -> Iterator[list[Record]]:
        if isinstance(head, Classify) and head.labels is None and self.engine.class_names:
            head = replace(head, labels=tuple(self.engine.class_names))  # a model of your own classes
        return run_stream(items, self.engine, head, batch_size=self.batch_size, workers=self.workers,
                          size=self.size, resize=self.resize, stats=stats)

    def _run(self, inputs, head) -> list[Record]:
        items = [(_name(src, i), src) for i, src in enumerate(_as_list(inputs))]
        return [r for batch in self._stream(items, head, None) for r in batch]


class Classifier(_ImageModel):
    """An ImageNet classifier over the shared Xception engine.

    >>> clf = Classifier(weights="imagenet")            # doctest: +SKIP
    >>> clf.predict("cat.jpg")[0].predictions[0].label   # doctest: +SKIP
    'tabby'

    Args:
        weights: ``"imagenet"`` (official file: ``$XCEPTION_WEIGHTS``, the Keras cache, or a
            download), a path to a weights file, or ``None`` / ``"none"`` for random weights.
        resize: ``"center-crop"`` (short side to 299/0.875, bicubic, centre crop) or ``"squash"``;
            ``None``: what the weights file records (``xception train --resize``), else center-crop.
        precision: ``"float32"`` or ``"bfloat16"`` (run only where the CPU has bfloat16 units on
            OpenVINO; Keras mixed precision on TensorFlow).
        batch_size: images per model call.
        workers: decoding threads.
        runtime: ``"auto"`` (default: OpenVINO whenever it can read the weights), ``"openvino"`` or
            ``"tensorflow"``; ``None`` reads ``$XCEPTION_RUNTIME``.
    """

    def __init__(self, weights: str | os.PathLike | None = "imagenet", resize: str | None = None,
                 precision: str = "float32", batch_size: int = 8, workers: int | None = None, progress=None,
                 runtime: str | None = None, top_k: int = 5):
        super().__init__(Classify(top_k), weights, resize, precision, batch_size, workers, progress, runtime)

    def stream(self, items: Iterable[tuple[str, object]] | Decoder, top_k: int | None = None,
               stats: Stats | None = None) -> Iterator[list[Record]]:
        """Classify ``(name, source)`` pairs lazily; yields each batch's records in order."""
        return self._stream(items, Classify(top_k or self.head.k), stats)

    def predict(self, inputs, top_k: int | None = None) -> list[Record]:
        """Classify one input or a list: paths, file bytes, PIL images or HxWx3 arrays (uint8 RGB).
        ``top_k``: labels per image [default: the classifier's own ``top_k``]."""
        return self._run(inputs, Classify(self.head.k if top_k is None else top_k))

    def predict_proba(self, inputs) -> np.ndarray:
        """Class probabilities ``(N, 1000)`` for already preprocessed float32 inputs ``(N, 299, 299, 3)``."""
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim == 4 and len(x) == 0:
            return np.zeros((0, len(self.engine.class_names or ()) or 1000), np.float32)
        return self.engine(x)


class Embedder(_ImageModel):
    """Xception's pooled features (2048 values per image) over the shared engine, without the top.

    >>> emb = Embedder(weights="imagenet", pooling="avg", normalize=True)   # doctest: +SKIP
    >>> emb.embed(["a.jpg", "b.jpg"]).shape                                  # doctest: +SKIP
    (2, 2048)

    Args as ``Classifier``, plus ``pooling`` (``"avg"`` or ``"max"``) and ``normalize`` (unit L2
    length). A weights file with the ImageNet top works too: the classifier is dropped.
    """

    def __init__(self, weights: str | os.PathLike | None = "imagenet", pooling: str = "avg",
                 normalize: bool = False, resize: str | None = None, precision: str = "float32",
                 batch_size: int = 8, workers: int | None = None, progress=None, runtime: str | None = None):
        super().__init__(Embed(pooling, normalize), weights, resize, precision, batch_size, workers, progress,
                         runtime)

    def stream(self, items: Iterable[tuple[str, object]] | Decoder, stats: Stats | None = None
               ) -> Iterator[list[Record]]:
        """Embed ``(name, source)`` pairs lazily; yields each batch's records (``embedding`` or ``error``)."""
        return self._stream(items, self.head, stats)

    def records(self, inputs) -> list[Record]:
        """One record per input (paths, PIL images or arrays): ``embedding`` or ``error``."""
        return self._run(inputs, self.head)

    def embed(self, inputs) -> np.ndarray:
        """``(N, 2048)`` float32 embeddings; ``ImageError`` naming the first input that cannot be read."""
        from .errors import ImageError

        records = self.records(inputs)
        for r in records:
            if r.error is not None:
                raise ImageError(f"{r.path}: {r.error}")
        return np.stack([r.embedding for r in records]) if records else np.zeros((0, 2048), np.float32)


def model_for(head, **kwargs) -> _ImageModel:
    """The API object that runs ``head`` (``heads.Classify`` or ``heads.Embed``)."""
    if isinstance(head, Embed):
        return Embedder(pooling=head.pooling, normalize=head.normalize, **kwargs)
    return Classifier(top_k=head.k, **kwargs)


def _as_list(inputs) -> list:
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)) or (
            isinstance(inputs, np.ndarray) and inputs.ndim != 4):
        return [inputs]
    try:
        from PIL import Image

        if isinstance(inputs, Image.Image):
            return [inputs]
    except ImportError:  # pragma: no cover
        pass
    return list(inputs)


def _name(src, i: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return f"<image {i}>"
