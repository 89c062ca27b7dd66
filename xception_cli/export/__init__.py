"""``xception export``: the network for serving, written from ``xception_graph`` like every other
realisation, each format with a metadata file beside it.

- ``openvino``: OpenVINO IR (``.xml`` + ``.bin``), float32 weights kept (not compressed to fp16);
  with ``int8=True``, post-training quantization by NNCF on the user's own photos, checked
  against float32 on held-out photos.
- ``saved-model``: a TensorFlow SavedModel for TensorFlow Serving, two signatures (float32 in
  ``[-1, 1]`` and uint8 pixels), the labels as an asset.
- ``onnx``: an ONNX model (opset 17) that ONNX Runtime runs.

No Click here; ``ExportResult`` says what was written and, for INT8, what it costs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, config
from ..errors import XceptionError
from ..weights import class_labels, describe, metadata_path, preprocessing_record

FORMATS = ("openvino", "saved-model", "onnx")
MIN_CALIBRATION = 10  # photos: fewer cannot calibrate INT8 and still hold some out to check it
HOLDOUT_EVERY = 5  # every 5th readable photo is held out to compare INT8 with float32
EXTRA_HINT = "pip install 'xception-cli[export]'"


class ExportError(XceptionError):
    """An export that cannot be done (missing package, bad target, too few calibration photos)."""


@dataclass
class ExportResult:
    format: str
    path: str  # the model file (or folder)
    files: list[str]
    metadata: dict
    int8_check: dict | None = None  # top-1 agreement and max |dp| vs float32 on held-out photos
    timings: dict = field(default_factory=dict)


def require(module: str, feature: str):
    """Import an optional package, or an ``ExportError`` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{feature} needs the '{module.split('.')[0]}' package: {EXTRA_HINT}") from None


def _metadata(fmt: str, source, precision: str, io: dict, extra: dict | None = None) -> dict:
    from ..weights import md5sum

    labels = class_labels(source)
    io = _with_classes(io, len(labels))

    return {
        "model": "xception",
        "format": fmt,
        "created_by": f"xception-cli {__version__}",
        "weights": {"file": None if source.path is None else str(source.path),
                    "md5": None if source.path is None else md5sum(source.path),
                    "random": source.path is None},
        "precision": precision,
        **io,
        "preprocessing": preprocessing_record(describe(source).resize_for(None)),  # as the weights were made
        "labels": labels,
        **(extra or {}),
    }


def _with_classes(io: dict, classes: int) -> dict:
    """The input/output description with the classifier's real size (1000, or a trained model's N)."""
    io = json.loads(json.dumps(io))
    if "output" in io:
        io["output"]["shape"] = ["N", classes]
    for sig in io.get("signatures", {}).values():
        sig["outputs"] = {k: f"float32 [N, {classes}]" for k in sig["outputs"]}
    return io


def _write_metadata(path: Path, meta: dict) -> str:
    path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return str(path)


def _check_target(output: str | os.PathLike, fmt: str) -> Path:
    out = Path(output)
    if fmt == "saved-model":  # serving layouts are deep (models/NAME/VERSION): made as needed
        if out.exists() and not out.is_dir():
            raise ExportError(f"{out}: a SavedModel is a folder, and this is a file")
        if out.exists() and any(out.iterdir()):
            raise ExportError(f"{out}: a SavedModel is a folder, and this one exists and is not empty")
        blocker = next((a for a in out.parents if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise ExportError(f"{out}: cannot write: {blocker} is a file, not a folder")
        return out
    if not out.parent.exists():
        raise ExportError(f"{out}: cannot write: folder {out.parent} does not exist")
    if fmt == "openvino" and out.suffix != ".xml":
        raise ExportError(f"{out}: an OpenVINO IR is written as NAME.xml (+ NAME.bin): "
                          f"use -o {out.with_suffix('.xml')}")
    if fmt == "onnx" and out.suffix != ".onnx":
        raise ExportError(f"{out}: an ONNX model is written as NAME.onnx: use -o {out.with_suffix('.onnx')}")
    return out


def export(fmt: str, output: str | os.PathLike, *, weights="imagenet", int8: bool = False,
           calibrate: str | None = None, calibration_size: int = 300, resize: str | None = None,
           workers: int | None = None, log: Callable[[str], None] | None = None,
           progress=None) -> ExportResult:
    """Export Xception with ``weights`` as ``fmt`` to ``output`` (see the module's docstring)."""
    import time

    from ..engine import Engine
    from ..runtimes import NetworkSpec, weight_arrays

    log = log or (lambda msg: None)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if int8 and fmt != "openvino":
        raise ExportError("--int8 is for the openvino format (NNCF quantizes the OpenVINO model)")
    if int8 and not calibrate:
        raise ExportError("--int8 needs --calibrate DIR: a folder of your own photos (100-300 recommended)")
    if calibrate and not int8:
        raise ExportError("--calibrate is for --int8")
    out = _check_target(output, fmt)
    engine = Engine(weights=weights, runtime_request="tensorflow" if fmt == "saved-model" else "auto",
                    progress=progress)
    source = engine.weights_source
    if source.format not in ("random", "legacy-h5"):
        raise ExportError(f"{source.path}: export reads the official-format .h5 weights (or none), "
                          f"not a {source.format} file")
    resize = describe(source).resize_for(resize)  # None: as the weights were made
    t0 = time.perf_counter()
    weights_np = weight_arrays(NetworkSpec(source))
    timings = {"read_weights_s": time.perf_counter() - t0}
    if fmt == "openvino":
        return _export_openvino(out, weights_np, source, int8, calibrate, calibration_size, resize, workers, log,
                                timings)
    if fmt == "onnx":
        return _export_onnx(out, weights_np, source, log, timings)
    return _export_saved_model(out, weights_np, source, log, timings)


# ---------------------------------------------------------------------------------------------
# OpenVINO IR (+ INT8)


IO_NHWC = {
    "input": {"name": "input_image", "shape": ["N", 299, 299, 3], "dtype": "float32",
              "range": "[-1, 1] (x / 127.5 - 1)"},
    "output": {"name": "predictions", "shape": ["N", 1000], "dtype": "float32", "meaning": "softmax probabilities"},
}


def _export_openvino(out, weights_np, source, int8, calibrate, calibration_size, resize, workers, log, timings):
    import time

    import openvino as ov

    from ..runtimes.openvino import build_model

    t0 = time.perf_counter()
    model = build_model(weights_np)
    timings["build_s"] = time.perf_counter() - t0
    check = None
    precision = "float32"
    if int8:
        t1 = time.perf_counter()
        model, check = quantize(model, calibrate, calibration_size=calibration_size, resize=resize,
                                workers=workers, log=log)
        timings["quantize_s"] = time.perf_counter() - t1
        precision = "int8"
    t2 = time.perf_counter()
    ov.save_model(model, str(out), compress_to_fp16=False)
    timings["save_s"] = time.perf_counter() - t2
    extra = {"int8": check} if check else {}
    meta = _metadata("openvino", source, precision, IO_NHWC, extra)
    files = [str(out), str(out.with_suffix(".bin")), _write_metadata(metadata_path(out), meta)]
    return ExportResult("openvino", str(out), files, meta, check, timings)


def calibration_set(folder: str, resize: str = "center-crop", workers: int | None = None,
                    log: Callable[[str], None] | None = None) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Decode ``folder``'s photos exactly as ``predict`` does: ``(calibration, held_out, unreadable)``
    as uint8 pixel arrays, in sorted order (deterministic); every 5th readable photo is held out."""
    from ..discovery import discover
    from ..pipeline import Decoder

    log = log or (lambda msg: None)
    if not os.path.isdir(folder):
        raise ExportError(f"{folder}: not a folder (--calibrate needs a folder of photos)")
    paths = discover([folder]).paths
    pixels, bad = [], 0
    with Decoder(((p, p) for p in paths), resize=resize, workers=workers) as decoder:
        for name, px, err, _ in decoder:
            if err is not None:
                log(f"warning: {name}: {err} (not used for calibration)")
                bad += 1
            else:
                pixels.append(px)
    if len(pixels) < MIN_CALIBRATION:
        raise ExportError(
            f"{folder}: too few photos to calibrate INT8: {len(pixels)} readable image(s), at least "
            f"{MIN_CALIBRATION} are needed (100-300 of the kind you will classify are best)")
    held = pixels[HOLDOUT_EVERY - 1::HOLDOUT_EVERY]
    calib = [px for i, px in enumerate(pixels) if (i + 1) % HOLDOUT_EVERY]
    return calib, held, bad


def quantize(model, folder: str, *, calibration_size: int = 300, resize: str = "center-crop",
             workers: int | None = None, log: Callable[[str], None] | None = None):
    """NNCF post-training INT8 quantization of an OpenVINO model on ``folder``'s photos; returns
    ``(int8 model, check)`` where ``check`` compares INT8 with float32 on the held-out photos."""
    from ..preprocess import to_input
    from ..runtimes.openvino import compile_model, make_infer

    nncf = require("nncf", "--int8")
    log = log or (lambda msg: None)
    calib, held, bad = calibration_set(folder, resize=resize, workers=workers, log=log)
    subset = min(calibration_size, len(calib))
    log(f"calibrating INT8 on {subset} photos ({len(held)} held out to check it)")
    dataset = nncf.Dataset(calib, lambda px: to_input(px[None]))
    import logging

    logging.getLogger("nncf").setLevel(logging.ERROR)  # NNCF's INFO lines
    # NNCF draws its progress bars on stdout, where a program may be reading our JSON: they go to
    # stderr on a terminal, and nowhere otherwise.
    import contextlib
    import sys

    with contextlib.ExitStack() as stack:
        sink = sys.stderr if sys.stderr.isatty() else stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stdout(sink))
        # MIXED: asymmetric activations. Xception's residual sums are signed (no ReLU after the
        # Add), and symmetric ranges lose half their levels there: on the benchmark corpus top-1
        # agreement with float32 went from 67% (PERFORMANCE) to 94% (benchmarks/RESULTS.md).
        q = nncf.quantize(model, dataset, subset_size=subset, preset=nncf.QuantizationPreset.MIXED)
    x = to_input(np.stack(held))
    f32 = make_infer(compile_model(model))(x)
    i8 = make_infer(compile_model(q))(x)
    check = {
        "calibration_photos": subset, "held_out_photos": len(held), "unreadable": bad,
        "top1_agreement": round(float(np.mean(f32.argmax(1) == i8.argmax(1))), 4),
        "top1_agree_count": int(np.sum(f32.argmax(1) == i8.argmax(1))),
        "max_abs_probability_difference": round(float(np.abs(f32 - i8).max()), 6),
    }
    return q, check


# ---------------------------------------------------------------------------------------------
# ONNX


def _export_onnx(out, weights_np, source, log, timings):
    import time

    require("onnx", "the onnx format")
    from .onnx_graph import build_onnx, save_onnx

    t0 = time.perf_counter()
    model = build_onnx(weights_np)
    meta = _metadata("onnx", source, "float32", IO_NHWC, {"opset": 17})
    for key in ("created_by", "precision", "format"):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"xception.{key}", str(meta[key])
    save_onnx(model, out)
    timings["build_and_save_s"] = time.perf_counter() - t0
    files = [str(out), _write_metadata(metadata_path(out), meta)]
    return ExportResult("onnx", str(out), files, meta, None, timings)


# ---------------------------------------------------------------------------------------------
# TensorFlow SavedModel


SERVING_IO = {
    "signatures": {
        "serving_default": {"inputs": {"images": "float32 [N, 299, 299, 3], RGB scaled to [-1, 1]"},
                            "outputs": {"probabilities": "float32 [N, 1000]"}},
        "serving_uint8": {"inputs": {"pixels": "uint8 [N, 299, 299, 3], RGB, already resized"},
                          "outputs": {"probabilities": "float32 [N, 1000]"}},
    },
}


def _export_saved_model(out, weights_np, source, log, timings):
    import time

    from ..runtimes.tensorflow import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    from ..fused import FoldedOps
    from ..model import xception_graph

    class VariableOps(FoldedOps):
        """The folded graph with its weights as (non-trainable) variables, which a SavedModel stores.

        tf.function may run the Python function more than once while tracing: the variables are
        made on the first pass and handed out again, in the same order, on the next ones.
        """

        def __init__(self, weights, module):
            super().__init__(weights)
            self.module = module
            self.next = 0

        def _const(self, array):
            if self.next == len(self.module.tracked):
                with tf.init_scope():
                    self.module.tracked.append(tf.Variable(array, trainable=False))
            v = self.module.tracked[self.next]
            self.next += 1
            return v

        def graph(self, x):
            self.next = 0
            return xception_graph(x, self)

    t0 = time.perf_counter()
    module = tf.Module(name="xception")
    module.tracked = []
    ops = VariableOps(weights_np, module)
    size = config.IMAGENET_INPUT_SIZE
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="xception-export-"))
    labels_file = tmp / "labels.txt"  # copied into the SavedModel as assets/labels.txt
    labels_file.write_text("".join(f"{label}\n" for _, label in class_labels(source)), encoding="utf-8")
    module.labels = tf.saved_model.Asset(str(labels_file))

    # Trace once here (weights captured as variables), then wrap for the two signatures.
    net = tf.function(ops.graph, autograph=False)
    graph = net.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32))  # never retraced
    module.net = net

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serving_default(images):
        return {"probabilities": graph(images)}

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="pixels")])
    def serving_uint8(pixels):
        x = tf.cast(pixels, tf.float32) / config.DEFAULT_PREPROCESS.scale + config.DEFAULT_PREPROCESS.offset
        return {"probabilities": graph(x)}

    module.serving_default, module.serving_uint8 = serving_default, serving_uint8
    try:
        tf.saved_model.save(module, str(out), signatures={"serving_default": serving_default,
                                                          "serving_uint8": serving_uint8})
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    timings["build_and_save_s"] = time.perf_counter() - t0
    meta = _metadata("saved-model", source, "float32", SERVING_IO,
                     {"tensorflow": tf.__version__, "labels_file": "assets/labels.txt"})
    files = [str(out), _write_metadata(metadata_path(out), meta)]
    return ExportResult("saved-model", str(out), files, meta, None, timings)


def result_dict(r: ExportResult) -> dict:
    d = asdict(r)
    d["metadata"] = {k: v for k, v in r.metadata.items() if k != "labels"}
    return d
