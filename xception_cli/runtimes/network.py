"""What every runtime takes and gives: ``NetworkSpec`` (what to build) and ``Network`` (what runs),
and the weights as arrays for the runtimes that build the graph themselves (no Keras)."""

from __future__ import annotations

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


def weight_arrays(spec: NetworkSpec) -> dict[str, list[np.ndarray]]:
    """``{layer name: [arrays]}`` for the official format or random weights, without Keras."""
    from ..weights import random_weights, read_weights

    if spec.weights.random:
        return random_weights(spec.include_top)
    if spec.weights.format != "legacy-h5":
        raise RuntimeChoiceError(f"{spec.weights.path}: a {spec.weights.format} file needs Keras to read")
    return read_weights(spec.weights.path, spec.include_top)
