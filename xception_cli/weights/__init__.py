"""Where weights come from and how they get into the model.

``resolve_weights("imagenet")`` finds the official file: ``$XCEPTION_WEIGHTS`` if set, else the
Keras cache (``$KERAS_HOME/models``, shared with ``keras.applications.Xception``) when its md5 is
right, else a download from the official URL into that cache, md5-checked. ``load_weights`` reads
a legacy Keras-2 ``.h5`` (the official layout, matched by topological order), a Keras 3
``.weights.h5`` or a ``.keras`` file (``safe_mode=True``: no code from the file is ever run).

Every failure is a ``WeightsError`` with one line that names the file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import WEIGHTS_NOTOP, WEIGHTS_TOP, WeightsFile
from .errors import WeightsError, one_line, whole_message

__all__ = ["WeightsError", "WeightsSource", "check_finite", "load_weights", "normalize_weights", "random_weights",
           "read_for_layout", "resolve_weights", "weights_source"]

ENV_WEIGHTS = "XCEPTION_WEIGHTS"


def keras_cache_dir() -> Path:
    """``$KERAS_HOME/models``, ``~/.keras/models`` by default: the cache Keras itself uses."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def official_file(include_top: bool = True) -> WeightsFile:
    return WEIGHTS_TOP if include_top else WEIGHTS_NOTOP


def _urlopen(url: str, timeout: float):  # indirection so tests can simulate the network
    return urllib.request.urlopen(url, timeout=timeout)


def download(
    spec: WeightsFile,
    dest: Path,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``spec`` to ``dest`` atomically, checking its md5; ``progress(done, total)``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = (
        f"download it elsewhere and pass it with --weights PATH or {ENV_WEIGHTS}=PATH, "
        f"or copy it to {dest}"
    )
    h = hashlib.md5()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with _urlopen(spec.url, timeout) as resp:
                    total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                    total = int(total) if total else None
                    done = 0
                    while block := resp.read(1 << 20):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                reason = getattr(e, "reason", None) or e
                raise WeightsError(
                    f"cannot download the ImageNet weights from {spec.url} ({reason}; are you offline?): {hint}"
                ) from None
        if h.hexdigest() != spec.md5:
            raise WeightsError(
                f"downloaded weights from {spec.url} have md5 {h.hexdigest()}, expected {spec.md5} "
                "(corrupted in transit?): try again, or " + hint
            )
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


IMAGENET, RANDOM = "imagenet", "none"
# How a weights file is read: the official Keras-2 layout is read with h5py alone (every runtime);
# Keras 3 formats need Keras (the TensorFlow runtime).
FORMATS = ("random", "legacy-h5", "keras-weights", "keras-archive", "openvino-ir")


def normalize_weights(weights: str | os.PathLike | None) -> str:
    """The one place ``--weights`` is interpreted: ``"imagenet"``, ``"none"`` (random weights, from
    ``None``, ``"none"``, ``"None"``...) or a path, as a string."""
    if weights is None or str(weights).strip().lower() == RANDOM:
        return RANDOM
    if str(weights).strip().lower() == IMAGENET:
        return IMAGENET
    return os.fspath(weights)


@dataclass(frozen=True)
class WeightsSource:
    """A resolved weights choice: the file to read (``None`` for random weights) and its format."""

    path: Path | None
    format: str

    @property
    def random(self) -> bool:
        return self.path is None


def weights_source(weights: str | os.PathLike | None, include_top: bool = True,
                   progress: Callable[[int, int | None], None] | None = None) -> WeightsSource:
    """Resolve ``--weights`` to a file (env var, Keras cache, download or path) and tell its format."""
    path = resolve_weights(weights, include_top=include_top, progress=progress)
    return WeightsSource(path, "random" if path is None else file_format(path))


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
        hdf5 = _is_hdf5(path)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    if not hdf5:
        raise WeightsError(f"{path}: not a weights file (expected HDF5 .h5 / .weights.h5, or .keras)")
    return "keras-weights" if path.name.endswith(".weights.h5") else "legacy-h5"


def random_weights(include_top: bool = True, seed: int = 0, classes: int = 1000) -> dict[str, list]:
    """Seeded random weights for every layer, made in NumPy (no Keras): Glorot-uniform kernels,
    BatchNormalization at identity statistics, zero classifier bias. ``{layer name: [arrays]}``."""
    import numpy as np

    from .model import weight_layout

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


def weights_files(weights: str | os.PathLike | None) -> list[str]:
    """The files a ``--weights`` value names without resolving anything (no download): the path
    given, an IR's ``.bin``, or ``$XCEPTION_WEIGHTS`` for ``imagenet``. For refusing an ``-o``."""
    weights = normalize_weights(weights)
    if weights == RANDOM:
        return []
    if weights == IMAGENET:
        return [os.environ[ENV_WEIGHTS]] if os.environ.get(ENV_WEIGHTS) else []
    return [weights, os.fspath(Path(weights).with_suffix(".bin"))] if weights.endswith(".xml") else [weights]


def resolve_weights(
    weights: str | os.PathLike | None,
    include_top: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path | None:
    """Turn ``"imagenet"``, ``"none"``/``None`` or a path into a file to load (or ``None``)."""
    weights = normalize_weights(weights)
    if weights == RANDOM:
        return None
    if weights == IMAGENET:
        env = os.environ.get(ENV_WEIGHTS)
        if env:
            path = Path(env).expanduser()
            if not path.is_file():
                raise WeightsError(f"{path}: weights file not found (from ${ENV_WEIGHTS})")
            return path
        spec = official_file(include_top)
        cached = keras_cache_dir() / spec.filename
        if cached.is_file():
            digest = md5sum(cached)
            if digest != spec.md5:
                raise WeightsError(
                    f"{cached}: md5 is {digest}, expected {spec.md5}: the file is corrupt or not the official "
                    "Xception weights; delete it to download it again"
                )
            return cached
        return download(spec, cached, progress=progress)
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    if not path.is_file():
        raise WeightsError(f"{path}: not a file")
    return path


# ---------------------------------------------------------------------------------------------
# Loading


def weighted_layers(model) -> list:
    """The layers that own weights, in topological order (how Keras matches a legacy .h5)."""
    return [layer for layer in model.layers if layer.weights]


def _shapes(arrays) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in a.shape) for a in arrays]


def _fmt(shapes) -> str:
    return "[" + ", ".join("x".join(map(str, s)) or "scalar" for s in shapes) + "]"


def check_layout(expected: list[tuple[str, list]], source_layers: list[tuple[str, list]], path: Path) -> None:
    """Compare ``[(name, [shapes])]`` wanted with ``[(name, [arrays])]`` found, layer by layer in
    order; raise ``WeightsError`` naming the first mismatching layer and both shapes."""
    for k, ((name, want), (src_name, arrays)) in enumerate(zip(expected, source_layers)):
        want, got = [tuple(w) for w in want], _shapes(arrays)
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


def check_finite(layers: list[tuple[str, list]], path: Path) -> None:
    """Refuse weights holding NaN or infinity (a corrupted or badly converted file): they would
    turn every probability into NaN."""
    import numpy as np

    for name, arrays in layers:
        for a in arrays:
            a = np.asarray(a)
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                what = "NaN" if np.isnan(a).any() else "infinite"
                raise WeightsError(f"{path}: layer '{name}' holds {what} values: the file is corrupted "
                                   "or was badly converted")


def assign_by_order(model, source_layers: list[tuple[str, list]], path: Path) -> None:
    """Set ``model``'s weights from ``[(name, [arrays])]`` matched layer by layer in order.

    Everything is checked before anything is assigned.
    """
    targets = weighted_layers(model)
    check_layout([(layer.name, _shapes(layer.weights)) for layer in targets], source_layers, path)
    check_finite(source_layers, path)
    for layer, (_, arrays) in zip(targets, source_layers):
        layer.set_weights(arrays)


def read_for_layout(path: str | os.PathLike, layout: list[tuple[str, list]]) -> dict[str, list]:
    """Read a legacy .h5 checked against ``layout``; ``{our layer name: [arrays]}`` (no Keras needed)."""
    path = Path(path)
    source = read_legacy_h5(path)
    check_layout(layout, source, path)
    check_finite(source, path)
    return {name: arrays for (name, _), (_, arrays) in zip(layout, source)}


CLASS_NAMES_ATTR = "xception_class_names"  # a model from `xception train`: its classes, as JSON
PREPROCESS_ATTR = "xception_preprocessing"


def file_class_names(path: str | os.PathLike) -> list[str] | None:
    """The class names a trained model file carries (``xception train``), or ``None`` (ImageNet)."""
    import json

    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(CLASS_NAMES_ATTR)
    except OSError:
        return None
    if raw is None:
        return None
    names = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise WeightsError(f"{path}: the file's class names are not a list of strings")
    return names


def read_weights(path: str | os.PathLike, include_top: bool = True) -> dict[str, list]:
    """A legacy .h5 checked against the network's layout, ``{layer name: [arrays]}`` (no Keras).

    Without the top, a file *with* the top is accepted too (its classifier is dropped), so one
    weights file serves both ``predict`` and ``embed``.
    """
    from .model import weight_layout

    path = Path(path)
    source = read_legacy_h5(path)
    # The classifier's size comes from the file: 1000 for ImageNet, N for a model of your own.
    classes = source[-1][1][-1].shape[0] if source and len(source[-1][1]) == 2 else 1000
    layout = weight_layout(include_top, classes)
    if not include_top and len(source) == len(layout) + 1:
        layout = weight_layout(True, classes)
    check_layout(layout, source, path)
    check_finite(source, path)
    return {name: arrays for (name, _), (_, arrays) in zip(layout, source) if include_top or name != "predictions"}


def read_legacy_h5(path: Path) -> list[tuple[str, list]]:
    """Read a Keras-2 HDF5 weights file: ``[(layer_name, [arrays in weight order])]``."""
    import h5py

    def text(v):
        return v.decode("utf8") if isinstance(v, bytes) else str(v)

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise WeightsError(f"{path}: an HDF5 file, but not Keras weights (no 'layer_names')")
            out = []
            for name in (text(n) for n in root.attrs["layer_names"]):
                group = root[name]
                names = [text(n) for n in group.attrs.get("weight_names", [])]
                if names:
                    out.append((name, [group[n][()] for n in names]))
            return out
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file ({str(e).splitlines()[0]})") from None


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


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


def _keras3_arrays(path: Path) -> tuple[int, list[tuple[int, ...]]]:
    """``(layers, sorted weight shapes)`` of a Keras 3 ``.weights.h5`` file, read without Keras."""
    import h5py

    shapes, layers = [], set()

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and "/vars/" in name:
            shapes.append(tuple(int(d) for d in obj.shape))
            layers.add(name.rsplit("/vars/", 1)[0])

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read as a Keras weights file ({one_line(e)})") from None
    return len(layers), sorted(shapes)


def _load_keras3_weights(model, path: Path) -> None:
    import warnings

    n_layers, shapes = _keras3_arrays(path)
    targets = weighted_layers(model)
    want = sorted(_shapes(w for layer in targets for w in layer.weights))
    if shapes != want:
        raise WeightsError(
            f"{path}: not Xception weights for this model: the file holds {len(shapes)} arrays in {n_layers} "
            f"layers, the model needs {len(want)} in {len(targets)}"
            + (" (with/without the classifier top?)" if abs(n_layers - len(targets)) == 1 else "")
        )
    try:
        # Keras warns once per layer it cannot match (150 lines for another architecture): the
        # one-line error below says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as e:  # noqa: BLE001 - Keras raises many types; we report one line
        raise WeightsError(f"{path}: not Xception weights for this model ({whole_message(e)})") from None
    check_finite([(layer.name, layer.get_weights()) for layer in weighted_layers(model)], path)


def _load_keras_archive(model, path: Path) -> None:
    import warnings

    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: cannot load this .keras file safely ({whole_message(e)})") from None
    assign_by_order(model, [(layer.name, layer.get_weights()) for layer in weighted_layers(other)], path)
