"""What kind of weights file this is, and its arrays read and checked without Keras.

``file_format`` tells a file's format from its name and first bytes; ``read_weights`` reads a
legacy Keras-2 ``.h5`` (the official layout, matched by topological order) with h5py alone, so
every runtime can use it; every array is checked against the network's layout and for values
that make the network invalid (``values.check_values``) before anyone uses it.

Every failure is a ``WeightsError`` with one line that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WeightsError
from .values import check_values

# How a weights file is read: the official Keras-2 layout is read with h5py alone (every runtime);
# Keras 3 formats need Keras (the TensorFlow runtime).
FORMATS = ("random", "legacy-h5", "keras-weights", "keras-archive", "openvino-ir")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def file_format(path: str | os.PathLike) -> str:
    """``"keras-archive"`` (.keras), ``"keras-weights"`` (.weights.h5), ``"openvino-ir"`` (.xml with
    its .bin, from ``xception export openvino``) or ``"legacy-h5"`` (any other HDF5 file);
    ``WeightsError`` for anything else."""
    path = Path(path)
    if path.suffix == ".keras":
        return "keras-archive"
    if path.suffix == ".xml":
        if not path.with_suffix(".bin").is_file():
            raise WeightsError(f"{path}: an OpenVINO IR needs its weights file {path.with_suffix('.bin').name} "
                               "beside it")
        return "openvino-ir"
    try:
        hdf5 = is_hdf5(path)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    if not hdf5:
        raise WeightsError(f"{path}: not a weights file (expected HDF5 .h5 / .weights.h5, or .keras)")
    return "keras-weights" if path.name.endswith(".weights.h5") else "legacy-h5"


def is_hdf5(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == HDF5_SIGNATURE


def shapes_of(arrays) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in a.shape) for a in arrays]


def _fmt(shapes) -> str:
    return "[" + ", ".join("x".join(map(str, s)) or "scalar" for s in shapes) + "]"


def check_layout(expected: list[tuple[str, list]], source_layers: list[tuple[str, list]], path: Path) -> None:
    """Compare ``[(name, [shapes])]`` wanted with ``[(name, [arrays])]`` found, layer by layer in
    order; raise ``WeightsError`` naming the first mismatching layer and both shapes."""
    for k, ((name, want), (src_name, arrays)) in enumerate(zip(expected, source_layers)):
        want, got = [tuple(w) for w in want], shapes_of(arrays)
        if want != got:
            raise WeightsError(
                f"{path}: not Xception weights for this model: layer #{k + 1} '{name}' expects "
                f"{_fmt(want)}, the file's layer '{src_name}' has {_fmt(got)}"
            )
    if len(source_layers) != len(expected):
        raise WeightsError(
            f"{path}: not Xception weights for this model: the file has {len(source_layers)} layers with "
            f"weights, the model {len(expected)}"
            + (" (with/without the classifier top?)" if abs(len(source_layers) - len(expected)) == 1 else "")
        )


def read_for_layout(path: str | os.PathLike, layout: list[tuple[str, list]]) -> dict[str, list]:
    """Read a legacy .h5 checked against ``layout``; ``{our layer name: [arrays]}`` (no Keras needed)."""
    path = Path(path)
    source = read_legacy_h5(path)
    check_layout(layout, source, path)
    check_values(source, path)
    return {name: arrays for (name, _), (_, arrays) in zip(layout, source)}


def read_weights(path: str | os.PathLike, include_top: bool = True) -> dict[str, list]:
    """A legacy .h5 checked against the network's layout, ``{layer name: [arrays]}`` (no Keras).

    Without the top, a file *with* the top is accepted too (its classifier is dropped), so one
    weights file serves both ``predict`` and ``embed``.
    """
    from ..model import weight_layout

    path = Path(path)
    source = read_legacy_h5(path)
    # The classifier's size comes from the file: 1000 for ImageNet, N for a model of your own.
    classes = source[-1][1][-1].shape[0] if source and len(source[-1][1]) == 2 else 1000
    layout = weight_layout(include_top, classes)
    if not include_top and len(source) == len(layout) + 1:
        layout = weight_layout(True, classes)
    check_layout(layout, source, path)
    check_values(source, path)
    return {name: arrays for (name, _), (_, arrays) in zip(layout, source) if include_top or name != "predictions"}


def _text(v) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def read_legacy_h5(path: Path) -> list[tuple[str, list]]:
    """Read a Keras-2 HDF5 weights file: ``[(layer_name, [arrays in weight order])]``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise WeightsError(f"{path}: an HDF5 file, but not Keras weights (no 'layer_names')")
            out = []
            for name in (_text(n) for n in root.attrs["layer_names"]):
                group = root[name]
                names = [_text(n) for n in group.attrs.get("weight_names", [])]
                if names:
                    out.append((name, [group[n][()] for n in names]))
            return out
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file ({str(e).splitlines()[0]})") from None


def classifier_size(path: str | os.PathLike) -> int | None:
    """The number of outputs of a legacy .h5's last layer with a bias (its classifier), read from
    the shapes alone; ``None`` when the file has no such layer or cannot say."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            names = [_text(n) for n in root.attrs.get("layer_names", [])]
            for name in reversed(names):
                weights = [_text(n) for n in root[name].attrs.get("weight_names", [])]
                if weights:
                    shapes = [root[name][w].shape for w in weights]
                    return int(shapes[-1][0]) if len(shapes) == 2 and len(shapes[-1]) == 1 else None
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return None
