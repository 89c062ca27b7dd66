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


def top_k(probabilities: np.ndarray, k: int = 5, labels=None) -> list[list[Prediction]]:
    """Decode a ``(N, classes)`` array of probabilities into the ``k`` best per row.

    ``labels``: the class names of a model trained on your own classes (``wnid`` is then
    ``None``); by default the ImageNet classes for 1000 outputs. ``k`` is capped at the number of
    classes. Ties are broken by the lower class index, so results are deterministic.
    """
    probs = np.asarray(probabilities)
    if probs.ndim == 1:
        probs = probs[None, :]
    if probs.ndim != 2:
        raise ValueError(f"expected probabilities of shape (N, classes), got {probs.shape}")
    n_classes = probs.shape[1]
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    k = min(k, n_classes)
    if labels is not None:
        if len(labels) != n_classes:
            raise ValueError(f"{len(labels)} class names for {n_classes} outputs")
        classes = [(None, str(name)) for name in labels]
    else:
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
