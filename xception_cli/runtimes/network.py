"""What every runtime takes and gives: ``NetworkSpec`` (what to build) and ``Network`` (what runs),
and the weights as arrays for the runtimes that build the graph themselves (no Keras)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import config
from ..errors import RuntimeChoiceError


@dataclass(frozen=True)
class NetworkSpec:
    """What to build: the weights (a resolved ``weights.WeightsSource``), head, size and precision."""

    weights: object  # weights.WeightsSource
    include_top: bool = True
    pooling: str | None = None
    input_size: int = config.IMAGENET_INPUT_SIZE
    precision: str = "float32"
    threads: int | None = None  # inference threads (OpenVINO); None: every core
    cache: bool = True  # the compiled network may come from (and go to) the user's cache (runtimes.cache)


@dataclass
class Network:
    """A loaded network: ``infer(batch) -> outputs`` and what actually runs it."""

    infer: Callable[[np.ndarray], np.ndarray]
    runtime: str
    version: str
    precision: str  # the precision that actually runs (read back from the runtime where it can say)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one-line warnings for the user
    handle: object = field(default=None, repr=False)  # the runtime's own object (e.g. OpenVINO's compiled model)
    cache: str | None = None  # the user's cache: "loaded" (from it), "stored" (into it), None (not used)
    # The network itself takes uint8 RGB pixels and scales them inside (an IR exported with uint8
    # input): ``infer`` takes them as they are. Otherwise pixels are scaled to [-1, 1] first.
    takes_pixels: bool = False


def import_openvino():
    """``import openvino``, without the model converter it loads to offer ``convert_model``
    (``openvino.tools.ovc``: about a tenth of OpenVINO's import time, and never used here); a
    later ``import openvino.tools.ovc`` still works."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    converter = "openvino.tools.ovc"
    blocked = converter not in sys.modules
    if blocked:
        sys.modules[converter] = None  # `import openvino` catches the ImportError and goes on
    try:
        import openvino
    finally:
        if blocked and converter in sys.modules and sys.modules[converter] is None:
            del sys.modules[converter]
    return openvino


def weight_arrays(spec: NetworkSpec) -> dict[str, list[np.ndarray]]:
    """``{layer name: [arrays]}`` for the official format or random weights, without Keras."""
    from ..weights import random_weights, read_weights

    if spec.weights.random:
        return random_weights(spec.include_top)
    if spec.weights.format != "legacy-h5":
        raise RuntimeChoiceError(f"{spec.weights.path}: a {spec.weights.format} file needs Keras to read")
    return read_weights(spec.weights.path, spec.include_top)
