"""What kind of weights file this is, and its arrays read and checked without Keras.

``file_format`` tells a file's format from its name and first bytes; ``read_weights`` reads a
legacy Keras-2 ``.h5`` (the official layout, matched by topological order) with h5py alone, so
every runtime can use it; every array is checked against the network's layout and for values
that make the network invalid (``values.check_values``) before anyone uses it.

Every failure is a ``WeightsError`` with one line that names the file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import WeightsError
from .values import check_values

# How a weights file is read: the official Keras-2 layout is read with h5py alone (every runtime);
# Keras 3 formats need Keras (the TensorFlow runtime).
FORMATS = ("random", "legacy-h5", "keras-weights", "keras-archive", "openvino-ir")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# What a weights file's arrays may take once loaded, counted as float32 (4 bytes a value; 8 for
# float64): every runtime computes in float32, so a float16 file takes twice its stored size.
# Xception is 22.9 M values (88 MB); its classifier adds 2049 values a class, so 320 MiB admits
# up to 30,758 classes (ImageNet-21k's 21,843 fit). A file declaring more is refused unread.
MAX_WEIGHTS_BYTES = 320 << 20


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
        raise WeightsError(f"{path}: not a weights file (expected HDF5 .h5 / .weights.h5, .keras, or an OpenVINO "
                           "IR .xml from xception export openvino)")
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
    source = read_legacy_h5(path, lambda datasets: layout)
    check_values(source, path)
    return {name: arrays for (name, _), (_, arrays) in zip(layout, source)}


def read_weights(path: str | os.PathLike, include_top: bool = True) -> dict[str, list]:
    """A legacy .h5 checked against the network's layout, ``{layer name: [arrays]}`` (no Keras).

    Without the top, a file *with* the top is accepted too (its classifier is dropped), so one
    weights file serves both ``predict`` and ``embed``.
    """
    path = Path(path)
    source = read_legacy_h5(path, lambda found: _layout_of(found, include_top))
    check_values(source, path)
    return {name: arrays for (name, _), (_, arrays) in zip(_layout_of(source, include_top), source)
            if include_top or name != "predictions"}


def _layout_of(source, include_top: bool) -> list[tuple[str, list]]:
    """The layout a file's ``[(name, [arrays or datasets])]`` is checked against."""
    from ..model import weight_layout

    # The classifier's size comes from the file: 1000 for ImageNet, N for a model of your own.
    classes = source[-1][1][-1].shape[0] if source and len(source[-1][1]) == 2 else 1000
    layout = weight_layout(include_top, classes)
    if not include_top and len(source) == len(layout) + 1:
        layout = weight_layout(True, classes)
    return layout


def check_declared(path, datasets) -> None:
    """Refuse arrays that are not floating point, or that would take more than ``MAX_WEIGHTS_BYTES``
    in all once loaded (values x 4 bytes, x 8 for float64), from their shapes and types alone
    (nothing read yet: HDF5 compression can hide gigabytes in a small file)."""
    total = 0
    for d in datasets:
        if d.dtype.kind != "f" or d.dtype.itemsize > 8:
            raise WeightsError(f"{path}: not Xception weights: an array of type {d.dtype} (expected floating point)")
        total += math.prod(int(n) for n in d.shape) * max(4, d.dtype.itemsize)
    if total > MAX_WEIGHTS_BYTES:
        amount = f"{total / 2**20:,.0f} MiB" if round(total / 2**20) > MAX_WEIGHTS_BYTES >> 20 else f"{total:,} bytes"
        raise WeightsError(f"{path}: its arrays declare {amount}, over the limit of "
                           f"{MAX_WEIGHTS_BYTES >> 20:,} MiB for a weights file (counted as float32, 4 bytes a value)")


def _text(v) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def read_legacy_h5(path: Path, layout_for=None) -> list[tuple[str, list]]:
    """Read a Keras-2 HDF5 weights file: ``[(layer_name, [arrays in weight order])]``.

    Nothing is read before it is measured: each dataset's shape and type (h5py gives them without
    reading) are compared with ``layout_for(datasets)`` (``check_layout``; skipped when ``None``)
    and with ``check_declared`` first.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise WeightsError(f"{path}: an HDF5 file, but not Keras weights (no 'layer_names')")
            found = []
            for name in (_text(n) for n in root.attrs["layer_names"]):
                group = root[name]
                names = [_text(n) for n in group.attrs.get("weight_names", [])]
                if names:
                    found.append((name, [_dataset(group[n], path) for n in names]))
            if layout_for is not None:
                check_layout(layout_for(found), found, path)
            check_declared(path, [d for _, datasets in found for d in datasets])
            # Read as float32 (what every runtime computes in): no float16 or float64 copy on the way.
            return [(name, [d.astype("float32")[()] for d in datasets]) for name, datasets in found]
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file ({str(e).splitlines()[0]})") from None


def _dataset(obj, path):
    import h5py

    if not isinstance(obj, h5py.Dataset):
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file (a weight that is not an array)")
    return obj


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
