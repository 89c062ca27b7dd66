"""``xception export``: the network for serving, written from ``xception_graph`` like every other
realisation, each format with a metadata file beside it.

- ``openvino``: OpenVINO IR (``.xml`` + ``.bin``), float32 weights kept (not compressed to fp16);
  with ``int8=True``, post-training quantization by NNCF on the user's own photos, checked
  against float32 on held-out photos.
- ``saved-model``: a TensorFlow SavedModel for TensorFlow Serving, two signatures (float32 in
  ``[-1, 1]`` and uint8 pixels), the labels as an asset (``saved_model``).
- ``onnx``: an ONNX model (opset 17) that ONNX Runtime runs.

``openvino`` and ``onnx`` take uint8 RGB pixels (NHWC) by default, scaled inside the model, so a
serving client sends pixels (OpenVINO Model Server: image bytes); ``input_kind="float"`` keeps
the float32 ``[-1, 1]`` input (``export.inputs``). The metadata records which (``input_kind``).

Every file of an export (the IR's ``.xml`` and ``.bin``, the ONNX file, the SavedModel's folder,
and the metadata beside each) goes through one ``output.target.Publication``: each is refused
before any work when it is the weights file or a calibration photo (any spelling, link), written
in a private staging folder, and published together, the metadata first and the model's own name
last, so an interrupted export leaves the earlier one as it was. The metadata records each model
file's size and sha256 (``model_files``): a set that an interrupted publication still left mixed is
refused by every reader (``weights.read_metadata``).

No Click here; ``ExportResult`` says what was written and, for INT8, what it costs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import XceptionError
from ..output.target import Protected, Publication
from ..weights import class_labels, describe, metadata_path, preprocessing_record, weights_files
from ..weights.metadata import file_record
from .inputs import DEFAULT_INPUT_KIND, check_input_kind, io_record, with_pixel_input

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
        "weights": {"file": None if source.path is None else os.path.basename(source.path),  # not where it lives
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


def _write_metadata(staged: str | os.PathLike, meta: dict, model_files: dict[str, str] | None = None) -> None:
    """The metadata, with the size and sha256 of each model file (``{extension: staged path}``)."""
    if model_files:
        meta["model_files"] = {ext: file_record(path) for ext, path in model_files.items()}
    Path(staged).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


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
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; the model is a file: choose another -o")
    return out


def export(fmt: str, output: str | os.PathLike, *, weights="imagenet", int8: bool = False,
           calibrate: str | None = None, calibration_size: int = 300, resize: str | None = None,
           workers: int | None = None, log: Callable[[str], None] | None = None,
           progress=None, input_kind: str | None = None) -> ExportResult:
    """Export Xception with ``weights`` as ``fmt`` to ``output`` (see the module's docstring);
    ``input_kind``: ``"uint8"`` (default) or ``"float"``, for ``openvino`` and ``onnx``."""
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
    if input_kind is not None and fmt == "saved-model":
        raise ExportError("--input is for openvino and onnx: a SavedModel has a float32 and a uint8 signature")
    kind = check_input_kind(input_kind or DEFAULT_INPUT_KIND)
    out = _check_target(output, fmt)
    photos = calibration_photos(calibrate) if int8 else []
    engine = Engine(weights=weights, runtime_request="tensorflow" if fmt == "saved-model" else "auto",
                    progress=progress)
    source = engine.weights_source
    if source.format not in ("random", "legacy-h5"):
        raise ExportError(f"{source.path}: export reads the official-format .h5 weights (or none), "
                          f"not a {source.format} file")
    protected = Protected(inputs=photos, weights=[*weights_files(weights), *[str(p) for p in [source.path] if p]])
    made: list[Path] = []
    try:
        if fmt == "saved-model":  # serving layouts are deep (models/NAME/VERSION): folders made as needed
            _make_folders(out.parent, made)
        with Publication(protected) as pub:
            staged = _stage(pub, fmt, out)  # every file checked and claimed before any work
            resize = describe(source).resize_for(resize)  # None: as the weights were made
            t0 = time.perf_counter()
            weights_np = weight_arrays(NetworkSpec(source))
            timings = {"read_weights_s": time.perf_counter() - t0}
            if fmt == "openvino":
                result = _export_openvino(out, staged, weights_np, source, kind, int8, calibrate, calibration_size,
                                          resize, workers, log, timings)
            elif fmt == "onnx":
                result = _export_onnx(out, staged, weights_np, source, kind, timings)
            else:
                result = _export_saved_model(out, staged, weights_np, source, timings)
            t1 = time.perf_counter()
        timings["publish_s"] = time.perf_counter() - t1
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    return result


def _stage(pub: Publication, fmt: str, out: Path) -> dict[str, str]:
    """The staged path of each file of ``fmt``'s export, in publishing order: the metadata first,
    the name a user passes to ``--weights`` last (an interrupted publication never shows a model
    without its metadata)."""
    if fmt == "saved-model":  # its metadata is inside: one folder, published whole
        return {"folder": pub.stage(out, folder=True)}
    staged = {"meta": pub.stage(metadata_path(out), companion=True)}
    if fmt == "openvino":
        staged["bin"] = pub.stage(out.with_suffix(".bin"), companion=True)
    staged[fmt] = pub.stage(out)
    return staged


def _make_folders(folder: Path, made: list[Path]) -> None:
    """Make ``folder`` and its missing parents, each added to ``made`` (outermost first)."""
    for f in [f for f in [folder, *folder.parents] if not f.exists()][::-1]:
        try:
            f.mkdir()
        except OSError as e:
            raise ExportError(f"{f}: cannot make the folder ({e.strerror or e})") from None
        made.append(f)


# ---------------------------------------------------------------------------------------------
# OpenVINO IR (+ INT8)


def _export_openvino(out, staged, weights_np, source, kind, int8, calibrate, calibration_size, resize, workers,
                     log, timings):
    import time

    import openvino as ov

    from ..runtimes.openvino import build_model

    t0 = time.perf_counter()
    model = build_model(weights_np)
    if kind == "uint8":
        model = with_pixel_input(model)  # NNCF then calibrates on pixels, as the IR will be fed
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
    ov.save_model(model, staged["openvino"], compress_to_fp16=False)  # writes its .bin beside it
    os.replace(Path(staged["openvino"]).with_suffix(".bin"), staged["bin"])
    timings["save_s"] = time.perf_counter() - t2
    extra = {"int8": check} if check else {}
    meta = _metadata("openvino", source, precision, io_record(kind), extra)
    _write_metadata(staged["meta"], meta, {"xml": staged["openvino"], "bin": staged["bin"]})
    files = [str(out), str(out.with_suffix(".bin")), str(metadata_path(out))]
    return ExportResult("openvino", str(out), files, meta, check, timings)


def calibration_photos(folder: str, log: Callable[[str], None] | None = None) -> list[str]:
    """The photos ``--calibrate`` names (an export never writes over one of them); links out of the
    folder are not followed, as ``predict`` (``log`` is told which were skipped)."""
    from ..discovery import discover, links_note

    if not os.path.isdir(folder):
        raise ExportError(f"{folder}: not a folder (--calibrate needs a folder of photos)")
    found = discover([folder])
    note = links_note(found.skipped, hint="put the photos themselves in the folder")
    if note and log:
        log(f"warning: {note}")
    return found.paths


def calibration_set(folder: str, resize: str = "center-crop", workers: int | None = None,
                    log: Callable[[str], None] | None = None) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Decode ``folder``'s photos exactly as ``predict`` does: ``(calibration, held_out, unreadable)``
    as uint8 pixel arrays, in sorted order (deterministic); every 5th readable photo is held out."""
    from ..pipeline import Decoder

    log = log or (lambda msg: None)
    paths = calibration_photos(folder, log)
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
    """NNCF post-training INT8 quantization of an OpenVINO model on ``folder``'s photos, fed as the
    model takes them (uint8 pixels, or float32 in ``[-1, 1]``); returns ``(int8 model, check)``
    where ``check`` compares INT8 with float32 on the held-out photos."""
    from ..runtimes.openvino import compile_model, input_feeder, make_infer

    nncf = require("nncf", "--int8")
    log = log or (lambda msg: None)
    calib, held, bad = calibration_set(folder, resize=resize, workers=workers, log=log)
    subset = min(calibration_size, len(calib))
    log(f"calibrating INT8 on {subset} photos ({len(held)} held out to check it)")
    feed = input_feeder(model)
    dataset = nncf.Dataset(calib, lambda px: feed(px[None]))
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
    x = np.stack(held)  # pixels: make_infer feeds each model what it takes
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


def _export_onnx(out, staged, weights_np, source, kind, timings):
    import time

    require("onnx", "the onnx format")
    from .onnx_graph import build_onnx, onnx_bytes

    t0 = time.perf_counter()
    model = build_onnx(weights_np, input_kind=kind)
    meta = _metadata("onnx", source, "float32", io_record(kind), {"opset": 17})
    for key in ("created_by", "precision", "format", "input_kind"):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"xception.{key}", str(meta[key])
    Path(staged["onnx"]).write_bytes(onnx_bytes(model))
    timings["build_and_save_s"] = time.perf_counter() - t0
    _write_metadata(staged["meta"], meta, {"onnx": staged["onnx"]})
    return ExportResult("onnx", str(out), [str(out), str(metadata_path(out))], meta, None, timings)


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


def _export_saved_model(out, staged, weights_np, source, timings):
    import time

    from .saved_model import save_saved_model

    t0 = time.perf_counter()
    tf_version = save_saved_model(staged["folder"], weights_np, [label for _, label in class_labels(source)])
    timings["build_and_save_s"] = time.perf_counter() - t0
    meta = _metadata("saved-model", source, "float32", SERVING_IO,
                     {"tensorflow": tf_version, "labels_file": "assets/labels.txt"})
    _write_metadata(metadata_path(staged["folder"]), meta)  # inside the folder: published with it
    return ExportResult("saved-model", str(out), [str(out), str(out / "xception.meta.json")], meta, None, timings)


def result_dict(r: ExportResult) -> dict:
    d = asdict(r)
    d["metadata"] = {k: v for k, v in r.metadata.items() if k != "labels"}
    return d
