"""Weight values: which ones make the network invalid, and valid random ones.

A file can hold the right shapes and still give garbage: NaN or infinite values, or a
BatchNormalization whose moving variance is negative (folded as ``gamma / sqrt(var + eps)`` it
becomes NaN, and every image then gets the same label). ``check_values`` refuses both, naming the
file and the layer, before any runtime sees the arrays.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import WeightsError

HINT = "the file is corrupted or was badly converted"


def is_batch_norm(arrays) -> bool:
    """A BatchNormalization's weights: ``[gamma, beta, moving_mean, moving_variance]``, four vectors
    of one length (no other Xception layer has four 1-D weights)."""
    return len(arrays) == 4 and all(np.ndim(a) == 1 for a in arrays) and len({np.shape(a) for a in arrays}) == 1


def check_values(layers: list[tuple[str, list]], path: str | os.PathLike) -> None:
    """Refuse ``[(layer name, [arrays])]`` that would make the network invalid: NaN or infinite
    values anywhere, a negative moving variance, or a BatchNormalization that overflows float32."""
    from ..model import BN_EPSILON

    for name, arrays in layers:
        arrays = [np.asarray(a) for a in arrays]
        for a in arrays:
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                what = "NaN" if np.isnan(a).any() else "infinite"
                raise WeightsError(f"{path}: layer '{name}' holds {what} values: {HINT}")
        if not is_batch_norm(arrays):
            continue
        gamma, beta, mean, var = (a.astype(np.float64) for a in arrays)
        if (var < 0).any():
            i = int(np.argmin(var))
            raise WeightsError(f"{path}: layer '{name}' has a negative moving variance ({var[i]:g} in channel {i}), "
                               f"which no data can give: {HINT}")
        scale = gamma / np.sqrt(var + BN_EPSILON)
        shift = beta - mean * scale
        limit = np.finfo(np.float32).max
        if not (np.abs(scale) <= limit).all() or not (np.abs(shift) <= limit).all():
            raise WeightsError(f"{path}: layer '{name}' overflows float32 as a BatchNormalization "
                               f"(gamma / sqrt(variance) or its shift beyond {limit:.3g}): {HINT}")


def random_weights(include_top: bool = True, seed: int = 0, classes: int = 1000) -> dict[str, list]:
    """Seeded random weights for every layer, made in NumPy (no Keras): Glorot-uniform kernels,
    BatchNormalization at identity statistics, zero classifier bias. ``{layer name: [arrays]}``."""
    from ..model import weight_layout

    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for name, shapes in weight_layout(include_top, classes):
        if len(shapes) == 4 and all(len(s) == 1 for s in shapes):  # BatchNormalization
            c = shapes[0]
            out[name] = [np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
                         np.ones(c, np.float32)]
            continue
        arrays = []
        for shape in shapes:
            if len(shape) == 1:  # a bias
                arrays.append(np.zeros(shape, np.float32))
                continue
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            arrays.append(rng.uniform(-limit, limit, shape).astype(np.float32))
        out[name] = arrays
    return out
