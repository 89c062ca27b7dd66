"""ImageNet class index and top-k decoding (NumPy only, works offline)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

import numpy as np


@dataclass(frozen=True)
class Prediction:
    rank: int
    index: int
    wnid: str
    label: str
    probability: float

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def class_index() -> tuple[tuple[str, str], ...]:
    """The 1000 ImageNet classes as ``(wnid, label)``, indexed by class number.

    Shipped with the package (Keras' own ``imagenet_class_index.json``), so no download.
    """
    raw = json.loads(resources.files("xception_cli").joinpath("data/imagenet_class_index.json").read_text("utf-8"))
    return tuple((raw[str(i)][0], raw[str(i)][1]) for i in range(len(raw)))


def top_k(probabilities: np.ndarray, k: int = 5) -> list[list[Prediction]]:
    """Decode a ``(N, classes)`` array of probabilities into the ``k`` best per row.

    Ties are broken by the lower class index, so results are deterministic.
    """
    probs = np.asarray(probabilities)
    if probs.ndim == 1:
        probs = probs[None, :]
    if probs.ndim != 2:
        raise ValueError(f"expected probabilities of shape (N, classes), got {probs.shape}")
    n_classes = probs.shape[1]
    if not 1 <= k <= n_classes:
        raise ValueError(f"top_k must be between 1 and {n_classes}, got {k}")
    classes = class_index() if n_classes == len(class_index()) else None
    # Stable sort on the negated values keeps the lower index first among equal probabilities.
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = []
    for row, idx in zip(probs, order):
        preds = []
        for rank, i in enumerate(idx, start=1):
            wnid, label = classes[i] if classes else ("", f"class_{i}")
            preds.append(Prediction(rank, int(i), wnid, label, float(row[i])))
        out.append(preds)
    return out
