"""What an exported model takes as input, and what its metadata says about it.

- ``uint8`` (the default of ``export openvino|onnx``): RGB pixels, NHWC ``[N, 299, 299, 3]``,
  already resized as ``predict`` resizes; the scaling to ``[-1, 1]`` (``x / 127.5 - 1``) is inside
  the model. A serving client sends pixels, and OpenVINO Model Server, which can decode JPEG/PNG
  itself only for an NHWC input whose layout it knows, takes image bytes: the IR's input carries
  its layout (``NHWC``) and element type (``u8``), added by OpenVINO's ``PrePostProcessor``.
  (The server decodes with OpenCV, to BGR: ``--color_format BGR:RGB`` makes it swap the channels
  back; ``tests/test_export.py`` applies the steps it adds.)
- ``float``: float32 already scaled to ``[-1, 1]`` (the client does the scaling), as before.

The ONNX model gets the same prefix as nodes (``onnx_graph.build_onnx(input_kind="uint8")``).
Whatever loads an exported IR for prediction reads the kind from the model's input element type
(``runtimes.openvino.input_feeder``).
"""

from __future__ import annotations

from .. import config

INPUT_KINDS = ("uint8", "float")
DEFAULT_INPUT_KIND = "uint8"
LAYOUT = "NHWC"
_SCALING = "x / 127.5 - 1"


def check_input_kind(kind: str) -> str:
    if kind not in INPUT_KINDS:
        raise ValueError(f"input kind must be one of {', '.join(INPUT_KINDS)}; got {kind!r}")
    return kind


def io_record(kind: str, size: int = config.IMAGENET_INPUT_SIZE) -> dict:
    """The metadata's ``input_kind``, ``input`` and ``output`` for a model taking ``kind``."""
    check_input_kind(kind)
    shape = ["N", size, size, 3]
    if kind == "uint8":
        described = {"dtype": "uint8", "range": f"RGB pixels 0-255, already resized; scaled inside ({_SCALING})"}
    else:
        described = {"dtype": "float32", "range": f"[-1, 1] ({_SCALING})"}
    return {
        "input_kind": kind,
        "input": {"name": "input_image", "shape": shape, "layout": LAYOUT, **described},
        "output": {"name": "predictions", "shape": ["N", config.IMAGENET_CLASSES], "dtype": "float32",
                   "meaning": "softmax probabilities"},
    }


def with_pixel_input(model, cfg: config.PreprocessConfig = config.DEFAULT_PREPROCESS):
    """An ``openvino.Model`` taking float32 NHWC in ``[-1, 1]`` made to take uint8 RGB pixels
    (NHWC, layout recorded on the input), scaled inside as ``to_input`` scales: ``x / scale + offset``."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    entry = ppp.input()
    entry.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout(LAYOUT))
    entry.model().set_layout(ov.Layout(LAYOUT))
    entry.preprocess().convert_element_type(ov.Type.f32).scale(cfg.scale).mean(-cfg.offset)
    return ppp.build()
