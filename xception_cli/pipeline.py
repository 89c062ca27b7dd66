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
from .labels import Prediction, top_k
from .preprocess import ImageError, load_image, to_input


@dataclass
class Record:
    """The result for one input: ``predictions`` or a one-line ``error``."""

    path: str
    predictions: list[Prediction] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
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


def _decode(source, size: int, resize: str):
    t0 = time.perf_counter()
    try:
        x = to_input(load_image(source, size, resize))
        return x, None, time.perf_counter() - t0
    except ImageError as e:
        return None, str(e), time.perf_counter() - t0
    except MemoryError:
        return None, "out of memory while decoding", time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - one bad file must never end the run
        msg = str(e).splitlines()[0] if str(e) else ""
        return None, f"cannot decode image: {type(e).__name__}: {msg}".rstrip(": "), time.perf_counter() - t0


def classify_stream(
    items: Iterable[tuple[str, object]],
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    k: int = 5,
    batch_size: int = 32,
    workers: int | None = None,
    size: int = DEFAULT_PREPROCESS.input_size,
    resize: str = "center-crop",
    stats: Stats | None = None,
) -> Iterator[list[Record]]:
    """Classify ``(name, source)`` items; yield each finished batch's records, in input order.

    ``source`` is a path, a PIL image or an array; ``infer`` maps a float32 batch to
    probabilities. Every batch holds ``batch_size`` decoded images (the last may hold fewer); a
    failed item is reported in its place among them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    stats = stats if stats is not None else Stats()
    stats.started = stats.started or time.perf_counter()
    workers = workers or default_workers()
    window = batch_size * 2 + workers  # decoded-but-unused images in memory, at most
    it = iter(items)
    pending: deque[tuple[str, Future]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")

    def fill() -> None:
        while len(pending) < window:
            try:
                name, source = next(it)
            except StopIteration:
                return
            pending.append((name, pool.submit(_decode, source, size, resize)))

    try:
        fill()
        while pending:
            entries: list[tuple[str, np.ndarray | None, str | None]] = []
            n_ok = 0
            while pending and n_ok < batch_size:
                name, fut = pending.popleft()
                t0 = time.perf_counter()
                x, err, dt = fut.result()
                stats.wait_s += time.perf_counter() - t0
                stats.decode_s += dt
                entries.append((name, x, err))
                n_ok += err is None
                fill()
            records: list[Record] = []
            if n_ok:
                t0 = time.perf_counter()
                probs = infer(np.stack([x for _, x, err in entries if err is None]))
                stats.model_s += time.perf_counter() - t0
                decoded = iter(top_k(probs, k))
            for name, _, err in entries:
                if err is None:
                    records.append(Record(name, predictions=next(decoded)))
                    stats.classified += 1
                else:
                    records.append(Record(name, error=err))
                    stats.failed += 1
            stats.elapsed_s = time.perf_counter() - stats.started
            yield records
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        stats.elapsed_s = time.perf_counter() - stats.started
