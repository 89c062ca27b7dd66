"""Weights own what a weights file says, one module per idea:

- ``resolve``: what ``--weights`` means (``imagenet``, ``none`` or a path) and the file it names
  (``$XCEPTION_WEIGHTS``, the Keras cache, an md5-checked download).
- ``files``: a file's format, and its arrays read with h5py and checked against the layout.
- ``values``: the values that make a network invalid (NaN/infinite, negative variances), and
  seeded random weights.
- ``loading``: weights into a Keras model (legacy .h5, ``.weights.h5``, ``.keras``).
- ``metadata``: the metadata file beside an exported model, read safely.
- ``info``: what a weights choice says: format, class names, preprocessing.

Every failure is a ``WeightsError`` with one line that names the file.
"""

from __future__ import annotations

from ..config import WEIGHTS_NOTOP, WEIGHTS_TOP
from ..errors import WeightsError
from .files import FORMATS, check_layout, file_format, read_for_layout, read_legacy_h5, read_weights
from .info import (
    CLASS_NAMES_ATTR,
    DEFAULT_RESIZE,
    PREPROCESS_ATTR,
    WeightsInfo,
    class_labels,
    describe,
    weights_classes,
    weights_info,
    weights_resize,
)
from .loading import assign_by_order, load_weights, weighted_layers
from .metadata import META_SUFFIX, metadata_path, preprocessing_record, read_metadata
from .resolve import (
    ENV_WEIGHTS,
    IMAGENET,
    RANDOM,
    WeightsSource,
    is_random,
    keras_cache_dir,
                   md5sum,
    normalize_weights,
    resolve_weights,
    same_weights,
    weights_files,
    weights_identity,
    weights_name,
    weights_source,
)
from .values import check_values, random_weights

__all__ = [
    "CLASS_NAMES_ATTR", "DEFAULT_RESIZE", "ENV_WEIGHTS", "FORMATS", "IMAGENET", "META_SUFFIX", "PREPROCESS_ATTR",
    "RANDOM", "WEIGHTS_NOTOP", "WEIGHTS_TOP", "WeightsError", "WeightsInfo", "WeightsSource", "assign_by_order",
    "check_layout", "check_values", "class_labels", "describe", "file_format", "is_random", "keras_cache_dir",
    "load_weights", "md5sum", "metadata_path", "normalize_weights", "preprocessing_record", "random_weights",
    "read_for_layout", "read_legacy_h5", "read_metadata", "read_weights", "resolve_weights", "same_weights",
    "weighted_layers", "weights_classes", "weights_files", "weights_identity", "weights_info", "weights_name",
    "weights_resize", "weights_source",
]
