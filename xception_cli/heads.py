"""What the network's output becomes: the one place where classifying and embedding differ.

A head says which network it needs (with the ImageNet top, or pooled features), how a batch of
outputs becomes per-image values, and under which key a record carries them. The pipeline, the
records, the writers and ``--resume`` take a head and never ask which one it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import top_k


@dataclass(frozen=True)
class Classify:
    """ImageNet top-k labels: records carry ``predictions``."""

    k: int = 5
    labels: tuple | None = None  # your own class names (a model from `xception train`); None: ImageNet
    key = "predictions"
    include_top = True
    pooling = None
    done, doing = "classified", "classifying"  # what messages say

    def __post_init__(self):
        import numbers

        if not isinstance(self.k, numbers.Integral) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"top_k must be a whole number >= 1, got {self.k!r}")

    def values(self, outputs: np.ndarray) -> list:
        return top_k(outputs, self.k, self.labels)


@dataclass(frozen=True)
class Embed:
    """Pooled 2048-d features (``avg`` or ``max``), optionally of unit L2 length: records carry
    ``embedding`` (float32)."""

    pooling: str = "avg"
    normalize: bool = False
    key = "embedding"
    include_top = False
    done, doing = "embedded", "embedding"

    def __post_init__(self):
        if self.pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {self.pooling!r}")

    def values(self, outputs: np.ndarray) -> list:
        x = np.asarray(outputs, dtype=np.float32)
        if self.normalize:
            x = normalize(x)
        return list(x)


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)

