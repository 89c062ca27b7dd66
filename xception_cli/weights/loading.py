"""Weights into a Keras model: a legacy ``.h5`` (read with h5py, see ``files``), a Keras 3
``.weights.h5`` or a ``.keras`` file (``safe_mode=True``: no code from the file is ever run).

Everything is checked (layout, then values) before the model is used; every failure is a
``WeightsError`` with one line that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from ..errors import WeightsError, one_line, whole_message
from .archive import check_archive
from .files import check_declared, check_layout, file_format, read_weights, shapes_of
from .values import check_values


def weighted_layers(model) -> list:
    """The layers that own weights, in topological order (how Keras matches a legacy .h5)."""
    return [layer for layer in model.layers if layer.weights]


def assign_by_order(model, source_layers: list[tuple[str, list]], path) -> None:
    """Set ``model``'s weights from ``[(name, [arrays])]`` matched layer by layer in order.

    Everything is checked before anything is assigned.
    """
    targets = weighted_layers(model)
    check_layout([(layer.name, shapes_of(layer.weights)) for layer in targets], source_layers, path)
    check_values(source_layers, path)
    for layer, (_, arrays) in zip(targets, source_layers):
        layer.set_weights(arrays)


def load_weights(model, path: str | os.PathLike) -> None:
    """Load a weights file of any supported kind into ``model``; ``WeightsError`` on any problem."""
    path = Path(path)
    fmt = file_format(path)
    if fmt == "openvino-ir":
        raise WeightsError(f"{path}: an OpenVINO IR runs on the OpenVINO runtime only; it cannot be loaded "
                           "into the Keras model (use the .h5 it was exported from)")
    if fmt == "keras-archive":
        return _load_keras_archive(model, path)
    if fmt == "keras-weights":
        return _load_keras3_weights(model, path)
    # Checked against the model's own top (or lack of one): a file with the top loads into a
    # model without it, its classifier dropped.
    has_top = any(layer.name == "predictions" for layer in model.layers)
    assign_by_order(model, list(read_weights(path, include_top=has_top).items()), path)


def _keras3_arrays(source, path: Path) -> tuple[int, list[tuple[int, ...]], list]:
    """``(layers, sorted weight shapes, every dataset's (dtype, shape))`` of a Keras 3
    ``.weights.h5`` file (a path, or the file inside a ``.keras`` archive), read without Keras:
    shapes and types only, no array data."""
    import h5py

    shapes, layers, declared = [], set(), []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            declared.append(SimpleNamespace(dtype=obj.dtype, shape=obj.shape))
            if "/vars/" in name:
                shapes.append(tuple(int(d) for d in obj.shape))
                layers.add(name.rsplit("/vars/", 1)[0])

    try:
        with h5py.File(source, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read as a Keras weights file ({one_line(e)})") from None
    return len(layers), sorted(shapes), declared


def _check_keras3_shapes(model, source, path: Path) -> None:
    """The file's arrays have the model's shapes, and every array in it is floating point within
    ``MAX_WEIGHTS_BYTES`` as loaded (``check_declared``): all compared before any of them is read."""
    n_layers, shapes, declared = _keras3_arrays(source, path)
    targets = weighted_layers(model)
    want = sorted(shapes_of(w for layer in targets for w in layer.weights))
    if shapes != want:
        raise WeightsError(
            f"{path}: not Xception weights for this model: the file holds {len(shapes)} arrays in {n_layers} "
            f"layers, the model needs {len(want)} in {len(targets)}"
            + (" (with/without the classifier top?)" if abs(n_layers - len(targets)) == 1 else "")
        )
    check_declared(path, declared)


def _load_keras3_weights(model, path: Path) -> None:
    import warnings

    _check_keras3_shapes(model, path, path)
    try:
        # Keras warns once per layer it cannot match (150 lines for another architecture): the
        # one-line error below says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as e:  # noqa: BLE001 - Keras raises many types; we report one line
        raise WeightsError(f"{path}: not Xception weights for this model ({whole_message(e)})") from None
    check_values([(layer.name, layer.get_weights()) for layer in weighted_layers(model)], path)


def _load_keras_archive(model, path: Path) -> None:
    import warnings

    import keras

    check_archive(model, path, lambda f: _check_keras3_shapes(model, f, path))  # before Keras builds a layer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: cannot load this .keras file safely ({whole_message(e)})") from None
    assign_by_order(model, [(layer.name, layer.get_weights()) for layer in weighted_layers(other)], path)
