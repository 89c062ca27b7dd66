"""The runtime layer: one interface, one module per runtime, and one place that chooses.

A runtime realises ``model.xception_graph`` for inference: ``load_network(spec, runtime)`` returns
a ``Network`` whose ``infer(batch)`` maps a float32 NHWC batch in ``[-1, 1]`` to float32 outputs
(``NetworkSpec`` and ``Network``, shared by every runtime, are in ``runtimes/network.py``).

- ``openvino`` (``runtimes/openvino.py``): the graph as OpenVINO ops, BatchNormalization folded,
  weights read from the official-format file with h5py (or made in NumPy for ``--weights none``).
  Never imports TensorFlow or Keras.
- ``tensorflow`` (``runtimes/tensorflow.py``): float32 as TensorFlow ops with BatchNormalization
  folded; bfloat16 as the Keras model under mixed precision; and every Keras weights format.
- ``cache`` (``runtimes/cache.py``): OpenVINO's compiled networks kept in the user's cache
  (``usercache``) and imported by later runs instead of reading, building and compiling again.

``choose_runtime`` is the only place the choice is made; ``decide_precision`` the only place the
precision that will actually run is decided. Both are pure functions of their arguments (CPU
flags injectable), so the decisions are tested without the hardware.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from ..errors import RuntimeChoiceError
from ..system import has_native_bf16
from .network import Network, NetworkSpec, weight_arrays

__all__ = ["CHOICES", "PRECISIONS", "RUNTIMES", "Network", "NetworkSpec", "choose_runtime", "decide_precision",
           "load_network", "requested_runtime", "weight_arrays"]

# `import openvino` starts OpenVINO's usage telemetry (a child process that posts to an analytics
# service, and a counter in ~/intel) unless the user opted out: a CLI that classifies local photos
# makes no network calls of its own accord. Without the package, OpenVINO uses its built-in stub.
if os.environ.get("XCEPTION_OPENVINO_TELEMETRY") != "1":
    sys.modules.setdefault("openvino_telemetry", None)

RUNTIMES = ("openvino", "tensorflow")
CHOICES = ("auto", *RUNTIMES)
PRECISIONS = ("float32", "bfloat16")
ENV_RUNTIME = "XCEPTION_RUNTIME"
# What each runtime can read without the other's help.
READS = {"openvino": ("random", "legacy-h5", "openvino-ir"),
         "tensorflow": ("random", "legacy-h5", "keras-weights", "keras-archive")}


def requested_runtime(value: str | None = None) -> str:
    """``--runtime`` if given, else ``$XCEPTION_RUNTIME``, else ``auto``; checked."""
    value = (value or os.environ.get(ENV_RUNTIME) or "auto").strip().lower()
    if value not in CHOICES:
        raise RuntimeChoiceError(f"unknown runtime {value!r} (from --runtime or ${ENV_RUNTIME}): "
                                 f"choose one of {', '.join(CHOICES)}")
    return value


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def choose_runtime(requested: str, weights_format: str, *, precision: str = "float32",
                   openvino_installed: bool | None = None) -> str:
    """The runtime that will run: ``auto`` takes OpenVINO whenever it can read the weights (and is
    installed), silently; an explicit choice that cannot work raises ``RuntimeChoiceError``."""
    requested = requested_runtime(requested)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    installed = openvino_available() if openvino_installed is None else openvino_installed
    if requested == "auto":
        return "openvino" if installed and weights_format in READS["openvino"] else "tensorflow"
    if requested == "tensorflow" and weights_format not in READS["tensorflow"]:
        raise RuntimeChoiceError(f"runtime tensorflow (--runtime or ${ENV_RUNTIME}) cannot run a {weights_format} "
                                 "file: use --runtime openvino (or auto)")
    if requested == "openvino":
        if not installed:
            raise RuntimeChoiceError("runtime openvino (--runtime or $XCEPTION_RUNTIME): OpenVINO is not "
                                     "installed (pip install openvino)")
        if weights_format not in READS["openvino"]:
            raise RuntimeChoiceError(
                f"runtime openvino (--runtime or ${ENV_RUNTIME}) reads the official-format .h5 (or --weights "
                f"none), not a {weights_format} file: use --runtime tensorflow (or auto)")
    return requested


def decide_precision(requested: str, runtime: str, cpu_flags=None) -> tuple[str, str | None]:
    """``(precision to run, warning or None)``.

    OpenVINO runs bfloat16 only on CPUs with native bf16 units (AMX, AVX512-BF16): elsewhere it
    would emulate it slowly, so it runs float32 and says so. TensorFlow runs what is asked (Keras
    mixed precision; slower without those units, as ``benchmark --compare-precision`` shows).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}")
    if requested == "bfloat16" and runtime == "openvino" and not has_native_bf16(cpu_flags):
        return "float32", ("--precision bfloat16: this CPU has no bfloat16 units (AMX or AVX512-BF16), "
                           "so OpenVINO runs float32 (faster here, and exact)")
    return requested, None


def load_network(spec: NetworkSpec, runtime: str, *, keras_model: Callable[[], object] | None = None,
                 cpu_flags=None) -> Network:
    """Build ``spec`` on ``runtime`` (already chosen by ``choose_runtime``).

    ``keras_model``: a callable returning the loaded Keras model, for the TensorFlow runtime when it
    needs one (Keras weight formats, bfloat16); the engine passes its own so nothing is built twice.
    """
    precision, note = decide_precision(spec.precision, runtime, cpu_flags)
    t0 = time.perf_counter()
    if runtime == "openvino":
        from .openvino import load

        imported = time.perf_counter()
        net = load(spec, precision)
    elif runtime == "tensorflow":
        from .tensorflow import load

        imported = time.perf_counter()
        net = load(spec, precision, keras_model)
    else:
        raise RuntimeChoiceError(f"unknown runtime {runtime!r}")
    net.timings["import_s"] = net.timings.get("import_s", 0.0) + imported - t0
    if note:
        net.notes.insert(0, note)
    from ..usercache import take_notes

    net.notes.extend(take_notes())  # the cache's warnings (an entry rebuilt, a folder not used), once
    return net
