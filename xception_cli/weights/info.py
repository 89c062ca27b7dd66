"""What a weights choice says about the network, read once, here: its format, its class names
(a model from ``xception train``, or an IR exported from one) and the preprocessing it was made
with (``xception train --resize squash`` records ``squash``).

A legacy ``.h5`` from ``xception train`` carries its class names and preprocessing as HDF5
attributes; an exported IR carries them in its metadata file (``metadata``). Nothing here loads a
network or downloads anything: ``imagenet`` is ImageNet's 1000 classes and center-crop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import IMAGENET_CLASSES, RESIZE_MODES
from ..errors import WeightsError
from .files import classifier_size
from .metadata import MAX_METADATA_BYTES, class_names_of, parse_json, read_metadata, resize_of
from .resolve import RANDOM, WeightsSource, local_source, normalize_weights

CLASS_NAMES_ATTR = "xception_class_names"  # a model from `xception train`: its classes, as JSON
PREPROCESS_ATTR = "xception_preprocessing"  # ... and how its photos were prepared, as a JSON object
DEFAULT_RESIZE = RESIZE_MODES[0]  # center-crop, the usual ImageNet evaluation


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says: ``format`` (``files.FORMATS``), ``class_names`` (a trained model's
    own classes; ``None``: ImageNet) and ``resize`` (the mode the file records; ``None``: none)."""

    format: str
    class_names: tuple[str, ...] | None = None
    resize: str | None = None

    @property
    def classes(self) -> int:
        """The number of classes the network gives."""
        return len(self.class_names) if self.class_names else IMAGENET_CLASSES

    def resize_for(self, requested: str | None = None) -> str:
        """``requested`` when given, else what the file records, else center-crop."""
        return check_resize(requested) if requested is not None else self.resize or DEFAULT_RESIZE


def check_resize(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    return resize


def describe(source: WeightsSource) -> WeightsInfo:
    """What the resolved ``source`` says (reads its attributes or its metadata file, nothing more)."""
    if source.path is None:
        return WeightsInfo(source.format)
    if source.format == "legacy-h5":  # h5py and the file opened once per file (kept in the user's cache)
        from ..usercache import remember

        names, preprocessing = remember("h5-attributes", source.path, lambda: _h5_attributes(source.path))
        return WeightsInfo(source.format, tuple(names) if names else None, preprocessing)
    if source.format == "openvino-ir":
        meta = read_metadata(source.path)
        if meta is None:
            return WeightsInfo(source.format)
        names = class_names_of(meta)
        return WeightsInfo(source.format, tuple(names) if names else None, resize_of(meta))
    return WeightsInfo(source.format)


def weights_info(weights: str | os.PathLike | None) -> WeightsInfo:
    """What a ``--weights`` value says, without a download (the official file says nothing beyond
    ImageNet's facts); ``WeightsError`` when the file is missing or says something invalid."""
    source = local_source(weights)
    if source is None:
        return WeightsInfo("random" if normalize_weights(weights) == RANDOM else "legacy-h5")
    return describe(source)


def weights_classes(weights: str | os.PathLike | None) -> int:
    """The number of classes a ``--weights`` value gives (1000, or a trained model's N), without
    loading a network."""
    return weights_info(weights).classes


def weights_resize(weights: str | os.PathLike | None, resize: str | None = None) -> str:
    """The resize mode to use: ``resize`` when given, else what the weights file records (a model
    trained with ``--resize squash``), else center-crop."""
    if resize is not None:
        return check_resize(resize)
    return weights_info(weights).resize_for(None)


def class_labels(source: WeightsSource) -> list[list]:
    """``[[wnid, label]]`` per output: ImageNet's, or a trained model's own classes (wnid ``None``)."""
    from ..labels import class_index

    names = describe(source).class_names
    return [[None, n] for n in names] if names else [[wnid, label] for wnid, label in class_index()]


def _h5_attributes(path) -> tuple[tuple[str, ...] | None, str | None]:
    """``(class names, resize)`` a legacy .h5 records (``xception train``), each ``None`` if absent."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw_names, raw_pre = f.attrs.get(CLASS_NAMES_ATTR), f.attrs.get(PREPROCESS_ATTR)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read as an HDF5 file ({str(e).splitlines()[0]})") from None
    names = resize = None
    if raw_names is not None:
        names = _attr_json(path, raw_names, "class names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise WeightsError(f"{path}: the file's class names are not a list of strings")
        outputs = classifier_size(path)
        if outputs is not None and outputs != len(names):
            raise WeightsError(f"{path}: the file names {len(names)} classes for a classifier of {outputs} outputs")
        names = tuple(names)
    if raw_pre is not None:
        pre = _attr_json(path, raw_pre, "preprocessing")
        resize = pre.get("resize") if isinstance(pre, dict) else None
        if not isinstance(pre, dict) or resize not in (None, *RESIZE_MODES):
            raise WeightsError(f"{path}: the file's preprocessing is not an object with 'resize' one of "
                               f"{', '.join(RESIZE_MODES)}")
    return names, resize


def _attr_json(path, raw, what: str):
    data = raw if isinstance(raw, bytes) else str(raw)
    if len(data) > MAX_METADATA_BYTES:
        raise WeightsError(f"{path}: the file's {what} take more than {MAX_METADATA_BYTES >> 20} MiB")
    return parse_json(data, f"{path}: the file's {what}")
