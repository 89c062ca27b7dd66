"""``xception export``: options and messages; the work is ``xception_cli.export`` (no Click there)."""

from __future__ import annotations

import click

from ..config import RESIZE_MODES
from .common import CONTEXT, friendly_errors, said, stderr_is_terminal, weights_option


@click.command(context_settings=CONTEXT)
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["openvino", "saved-model", "onnx"]))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="NAME.xml (openvino: + NAME.bin), a new folder (saved-model) or NAME.onnx.")
@weights_option(accepts="h5")
@click.option("--int8", is_flag=True, help="openvino: quantize to INT8 with NNCF, calibrated on --calibrate DIR.")
@click.option("--calibrate", type=click.Path(), default=None, metavar="DIR",
              help="Your own photos for INT8 calibration (every 5th is held out to check INT8 against float32).")
@click.option("--calibration-size", type=click.IntRange(1, 100000), default=300, show_default=True,
              help="Photos used to calibrate (at most).")
@click.option("--resize", type=click.Choice(RESIZE_MODES), default=None,
              help="How calibration photos are preprocessed, as predict would [default: what the weights file "
              "says, else center-crop].")
@click.option("--input", "input_kind", type=click.Choice(["uint8", "float"]), default=None,
              help="What the model takes (openvino, onnx): uint8 RGB pixels, NHWC, scaled inside the model, "
              "so a server can be sent pixels or image bytes [default]; or float32 already scaled to [-1, 1].")
@click.option("-f", "--format", "out_fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print about the export on stdout.")
@friendly_errors
def export(fmt, output, weights, int8, calibrate, calibration_size, resize, input_kind, out_fmt):
    """Export the network for serving: OpenVINO IR (float32 or INT8), TensorFlow SavedModel, ONNX.

    \b
    Examples:
      xception export openvino -o xception.xml
      xception export openvino --int8 --calibrate ~/Photos/sample -o xception-int8.xml
      xception export saved-model -o serving/xception/1
      xception export onnx -o xception.onnx
      xception export onnx --input float -o xception-float.onnx
      xception predict ~/Photos --weights xception-int8.xml

    The IR and the ONNX model take uint8 RGB pixels (N, 299, 299, 3), already resized, and
    scale them inside; the IR records its NHWC layout, so OpenVINO Model Server can be sent
    JPEG/PNG bytes (serve it with --layout NHWC --color_format BGR:RGB: its OpenCV decodes to
    BGR). --input float keeps a float32 input scaled to [-1, 1] by the client.

    Each export writes NAME.EXT.meta.json beside the model (in a SavedModel: xception.meta.json):
    weights md5, preprocessing, input kind, labels, precision, and each model file's size and sha256. The
    files are published together once complete: an interrupted export leaves the earlier one.
    INT8 changes the numbers: the command prints top-1 agreement and max |dp| against float32
    on held-out photos.
    """
    import json

    from ..export import export as run_export
    from ..export import result_dict

    log = lambda msg: click.echo(said(msg), err=True)  # noqa: E731
    result = run_export(fmt, output, weights=weights, int8=int8, calibrate=calibrate,
                        calibration_size=calibration_size, resize=resize, log=log, input_kind=input_kind)
    if out_fmt == "json":
        click.echo(json.dumps(result_dict(result), indent=2))
        return
    for f in result.files:
        click.echo(f"wrote {said(str(f))}")
    c = result.int8_check
    if c:
        click.echo(
            f"INT8 vs float32 on {c['held_out_photos']} held-out photos: top-1 agrees on {c['top1_agree_count']} "
            f"({c['top1_agreement']:.0%}), max |dp| {c['max_abs_probability_difference']:.3g}; "
            f"calibrated on {c['calibration_photos']} photos")
    if stderr_is_terminal():
        click.echo(f"try it: xception predict PHOTOS --weights {said(str(result.path))}" if fmt == "openvino" else "",
                   err=True)
