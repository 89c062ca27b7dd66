"""The Python API: ``Classifier(weights=...).predict(paths_or_arrays, top_k=5)``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from . import config
from .config import RESIZE_MODES
from .engine import get_engine
from .pipeline import Decoder, Record, Stats, classify_stream


class Classifier:
    """An ImageNet classifier over the shared Xception engine.

    >>> clf = Classifier(weights="imagenet")            # doctest: +SKIP
    >>> clf.predict("cat.jpg")[0].predictions[0].label   # doctest: +SKIP
    'tabby'

    Args:
        weights: ``"imagenet"`` (official file: ``$XCEPTION_WEIGHTS``, the Keras cache, or a
            download), a path to a weights file, or ``None`` / ``"none"`` for random weights.
        resize: ``"center-crop"`` (short side to 299/0.875, bicubic, centre crop) or ``"squash"``.
        precision: ``"float32"`` or ``"bfloat16"`` (run only where the CPU has bfloat16 units on
            OpenVINO; Keras mixed precision on TensorFlow).
        batch_size: images per model call.
        workers: decoding threads.
        runtime: ``"auto"`` (default: OpenVINO whenever it can read the weights), ``"openvino"`` or
            ``"tensorflow"``; ``None`` reads ``$XCEPTION_RUNTIME``.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = "imagenet",
        resize: str = "center-crop",
        precision: str = "float32",
        batch_size: int = 8,
        workers: int | None = None,
        progress=None,
        runtime: str | None = None,
    ):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.engine = get_engine(weights=weights, include_top=True, precision=precision, progress=progress,
                                 runtime=runtime)
        self.resize = resize
        self.batch_size = batch_size
        self.workers = workers
        self.size = config.IMAGENET_INPUT_SIZE

    def load(self) -> Classifier:
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

    def stream(self, items: Iterable[tuple[str, object]] | Decoder, top_k: int = 5, stats: Stats | None = None
               ) -> Iterator[list[Record]]:
        """Classify ``(name, source)`` pairs lazily; yields each batch's records in order."""
        return classify_stream(
            items, self.engine, k=top_k, batch_size=self.batch_size, workers=self.workers,
            size=self.size, resize=self.resize, stats=stats,
        )

    def predict(self, inputs, top_k: int = 5) -> list[Record]:
        """Classify one input or a list: paths, PIL images or HxWx3 arrays (uint8 RGB)."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray)) and not (
            isinstance(inputs, np.ndarray) and inputs.ndim == 4
        ):
            inputs = [inputs]
        elif not isinstance(inputs, (list, tuple, np.ndarray)):
            try:
                from PIL import Image

                if isinstance(inputs, Image.Image):
                    inputs = [inputs]
            except ImportError:  # pragma: no cover
                pass
        items = [(_name(src, i), src) for i, src in enumerate(inputs)]
        return [r for batch in self.stream(items, top_k=top_k) for r in batch]

    def predict_proba(self, inputs) -> np.ndarray:
        """Class probabilities ``(N, 1000)`` for already preprocessed float32 inputs ``(N, 299, 299, 3)``."""
        return self.engine(np.asarray(inputs, dtype=np.float32))


def _name(src, i: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return f"<image {i}>"
