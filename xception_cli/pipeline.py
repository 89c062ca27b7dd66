"""The streaming classification pipeline.

Images are decoded and preprocessed by a small thread pool (Pillow releases the GIL), a bounded
window ahead of the model, so decoding overlaps inference and memory stays flat whatever the
number of files. Results come back per batch, in input order; a file that cannot be read becomes
a ``Record`` with an ``error`` and the run goes on.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .config import DEFAULT_PREPROCESS
from .heads import Classify
from .labels import Prediction
from .preprocess import ImageError, load_image, to_input


@dataclass
class Record:
    """The result for one input: ``predictions`` (classify) or ``embedding`` (embed), or a one-line
    ``error``."""

    path: str
    predictions: list[Prediction] | None = None
    error: str | None = None
    embedding: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        if self.embedding is not None:
            return {"path": self.path, "embedding": [float(f"{v:.7g}") for v in self.embedding]}
        return {"path": self.path, "predictions": [p.to_dict() for p in self.predictions]}


@dataclass
class Stats:
    """Running totals of one pipeline run (the pipeline fills them as it goes)."""

    classified: int = 0
    failed: int = 0
    decode_s: float = 0.0  # summed over worker threads
    model_s: float = 0.0
    wait_s: float = 0.0  # time the model loop waited for decoded images
    started: float = 0.0
    elapsed_s: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.classified / self.elapsed_s if self.elapsed_s > 0 else 0.0


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def _decode(source, size: int, resize: str, load=load_image):
    """Decode one item to uint8 pixels (4x smaller than float32 while it waits in the window)."""
    t0 = time.perf_counter()
    if isinstance(source, ImageError):  # known bad before decoding (e.g. a missing input)
        return None, str(source), 0.0
    try:
        px = load(source, size, resize)
        return px, None, time.perf_counter() - t0
    except ImageError as e:
        return None, str(e), time.perf_counter() - t0
    except MemoryError:
        return None, "out of memory while decoding", time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - one bad file must never end the run
        msg = str(e).splitlines()[0] if str(e) else ""
        return None, f"cannot decode image: {type(e).__name__}: {msg}".rstrip(": "), time.perf_counter() - t0


PREFETCH = 64  # decoded images that may wait for the model: 299x299x3 uint8, about 17 MB


class Decoder:
    """Decodes ``(name, source)`` items in a thread pool, at most ``window`` ahead, in order.

    Decoding starts as soon as it is created, so it can run while the model is still loading
    (TensorFlow's import is single-threaded: the other cores are free). Iterate it for
    ``(name, pixels | None, error | None, seconds)``; ``close()`` stops the threads.
    """

    load = staticmethod(load_image)  # (source, size, resize) -> what an item becomes (a subclass may make more)

    def __init__(self, items: Iterable[tuple[str, object]], *, size: int = DEFAULT_PREPROCESS.input_size,
                 resize: str = "center-crop", workers: int | None = None, window: int = PREFETCH):
        self.size, self.resize = size, resize
        self.workers = workers or default_workers()
        self.window = max(window, self.workers)
        self._it = iter(items)
        self._pending: deque[tuple[str, Future]] = deque()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode")
        self.wait_s = 0.0
        self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self.window:
            try:
                name, source = next(self._it)
            except StopIteration:
                return
            self._pending.append((name, self._pool.submit(_decode, source, self.size, self.resize, self.load)))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            raise StopIteration
        name, fut = self._pending.popleft()
        t0 = time.perf_counter()
        px, err, dt = fut.result()
        self.wait_s += time.perf_counter() - t0
        self._fill()
        return name, px, err, dt

    def close(self) -> None:
        for _, fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def classify_stream(
    items: Iterable[tuple[str, object]] | Decoder,
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    k: int = 5,
    **options,
) -> Iterator[list[Record]]:
    """``run_stream`` with the classifying head (``k`` labels per image); ``options`` are
    ``run_stream``'s (``batch_size``, ``workers``, ``size``, ``resize``, ``stats``)."""
    return run_stream(items, infer, Classify(k), **options)


def run_stream(
    items: Iterable[tuple[str, object]] | Decoder,
    infer: Callable[[np.ndarray], np.ndarray],
    head,
    *,
    batch_size: int = 8,
    workers: int | None = None,
    size: int = DEFAULT_PREPROCESS.input_size,
    resize: str = "center-crop",
    stats: Stats | None = None,
) -> Iterator[list[Record]]:
    """Run ``(name, source)`` items through the network; yield each finished batch's records, in
    input order, their values made by ``head`` (``heads.Classify`` or ``heads.Embed``).

    ``source`` is a path, a PIL image or an array; ``infer`` maps a float32 batch to the
    network's outputs, or is an ``Engine``: then the decoded uint8 pixels go to its
    ``infer_pixels`` (a network that scales them itself gets them as they are). ``items`` may be
    a ``Decoder`` already running (then ``workers``, ``size`` and ``resize`` are its own). Every
    batch holds ``batch_size`` decoded images (the last may hold fewer); a failed item is reported
    in its place among them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    stats = stats if stats is not None else Stats()
    stats.started = stats.started or time.perf_counter()
    # An Engine (its class has infer_pixels; a mock's attributes or a function's don't count)
    takes_pixels = callable(getattr(type(infer), "infer_pixels", None))
    decoder = items if isinstance(items, Decoder) else Decoder(
        items, size=size, resize=resize, workers=workers, window=max(PREFETCH, 2 * batch_size))
    try:
        while True:
            entries: list[tuple[str, np.ndarray | None, str | None]] = []
            n_ok = 0
            for name, px, err, dt in decoder:
                stats.decode_s += dt
                entries.append((name, px, err))
                n_ok += err is None
                if n_ok == batch_size:
                    break
            if not entries:
                break
            records: list[Record] = []
            if n_ok:
                t0 = time.perf_counter()
                pixels = np.stack([px for _, px, err in entries if err is None])
                outputs = infer.infer_pixels(pixels) if takes_pixels else infer(to_input(pixels))
                stats.model_s += time.perf_counter() - t0
                decoded = iter(head.values(outputs))
            for name, _, err in entries:
                if err is None:
                    records.append(Record(name, **{head.key: next(decoded)}))
                    stats.classified += 1
                else:
                    records.append(Record(name, error=err))
                    stats.failed += 1
            stats.wait_s = decoder.wait_s
            stats.elapsed_s = time.perf_counter() - stats.started
            yield records
    finally:
        decoder.close()
        stats.wait_s = decoder.wait_s
        stats.elapsed_s = time.perf_counter() - stats.started
