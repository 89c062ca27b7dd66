"""A ``.keras`` archive measured before Keras builds anything from it.

Keras builds every layer its ``config.json`` declares, then reads ``model.weights.h5`` into them:
an 11.8 KB archive declaring ``Dense(20000)`` on a 20000-wide input allocates 8.8 GB before any
shape is compared. ``check_archive`` reads the config from the zip (never more than
``MAX_METADATA_BYTES``) and compares it with the model it is to be loaded into: the same classes
of layer, the weighted ones in the same order with the same sizes (units, filters, kernel size)
and the same input shapes; then the weights file's array shapes (``check_weights``). Only then
does ``loading`` hand the file to Keras.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ..errors import WeightsError, one_line
from .files import MAX_WEIGHTS_BYTES
from .metadata import MAX_METADATA_BYTES

CONFIG, WEIGHTS = "config.json", "model.weights.h5"
MODELS = ("Functional", "Model", "Sequential")  # what the archive's top-level object may be
# What decides the size of a layer's weights, beside its input's shape (its build_config)
SIZE_KEYS = ("units", "filters", "kernel_size", "depth_multiplier", "groups", "use_bias", "center", "scale",
             "batch_shape", "shape")


def check_archive(model, path: Path, check_weights) -> None:
    """Refuse an archive whose config declares other layers than ``model``'s, or whose members
    declare more than their limits; ``check_weights(file)`` is given the open weights file."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for name, limit in ((CONFIG, MAX_METADATA_BYTES), (WEIGHTS, MAX_WEIGHTS_BYTES)):
                if name not in names:
                    raise WeightsError(f"{path}: not a Keras archive (no {name} in it)")
                size = zf.getinfo(name).file_size
                if size > limit:
                    raise WeightsError(f"{path}: its {name} declares {size:,} bytes, over the limit of "
                                       f"{limit:,} bytes")
            config = json.loads(zf.read(CONFIG))
            _compare(_layers(config, path), model, path)
            with zf.open(WEIGHTS) as f:
                check_weights(f)
    except WeightsError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise WeightsError(f"{path}: cannot read as a Keras archive ({one_line(e)})") from None


def _layers(config, path: Path) -> list[dict]:
    if not isinstance(config, dict) or config.get("class_name") not in MODELS:
        raise WeightsError(f"{path}: not a Keras model archive (its config is not a Functional or Sequential model)")
    layers = (config.get("config") or {}).get("layers")
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise WeightsError(f"{path}: not a Keras model archive (its config lists no layers)")
    return layers


def _plain(value):
    """JSON's view of a value (tuples as lists), to compare a config with a live layer's."""
    return json.loads(json.dumps(value))


def _describe(entry: dict) -> tuple:
    """``(class name, sizes, build config)`` of a config entry, as JSON values."""
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return (entry.get("class_name"), {k: config[k] for k in SIZE_KEYS if k in config},
            (entry.get("build_config") or {}).get("input_shape"))


def _live(layer) -> tuple:
    config = _plain(layer.get_config())
    build = _plain(layer.get_build_config() or {}) if hasattr(layer, "get_build_config") else {}
    return type(layer).__name__, {k: config[k] for k in SIZE_KEYS if k in config}, build.get("input_shape")


def _compare(entries: list[dict], model, path: Path) -> None:
    allowed = {type(layer).__name__ for layer in model.layers} | {"InputLayer"}
    wanted = [_live(layer) for layer in model.layers if layer.weights or type(layer).__name__ == "InputLayer"]
    found = []
    for entry in entries:
        name = entry.get("class_name")
        if name not in allowed:
            raise WeightsError(f"{path}: not Xception: its config declares a layer of class {str(name)[:60]!r}, "
                               "which Xception does not have")
        if name in {w[0] for w in wanted}:
            found.append(_describe(entry))
    for k, (want, got) in enumerate(zip(wanted, found)):
        if got[0] != want[0] or got[1] != want[1] or (got[2] is not None and got[2] != want[2]):
            raise WeightsError(f"{path}: not Xception weights for this model: its config's layer #{k + 1} is "
                               f"{_shown(got)}, the model's {_shown(want)}")
    if len(found) != len(wanted):
        raise WeightsError(f"{path}: not Xception weights for this model: its config declares {len(found)} "
                           f"layers with weights, the model {len(wanted)}")


def _shown(described: tuple) -> str:
    name, sizes, shape = described
    text = f"{name}({', '.join(f'{k}={v}' for k, v in sizes.items())})"
    text = text if shape is None else f"{text} on {shape}"
    return text if len(text) <= 120 else text[:119] + "…"
