"""Xception as an ONNX model: ``model.xception_graph`` built node by node as an ``onnx.ModelProto``.

No TensorFlow, no Keras and no OpenVINO here or in what this imports: the weights are NumPy
arrays ``{keras layer name: [arrays]}`` (``weights.read_for_layout(path, weight_layout(include_top))``
or ``weights.random_weights``), every BatchNormalization is folded into the convolution before it
(``fused.fold``) and becomes that convolution's bias.

The model takes what the other runtimes take, an NHWC float32 batch ``(N, size, size, 3)``
(symbolic batch dimension ``"N"``) scaled to ``[-1, 1]`` — or, with ``input_kind="uint8"`` (what
``xception export onnx`` writes by default), uint8 RGB pixels scaled inside — and transposes it to
NCHW inside the graph; kernels are stored OIHW, a depthwise kernel as a ``Conv`` with ``group=C`` and weight
``[C, 1, 3, 3]``. TensorFlow's "SAME" padding is written as explicit ``pads`` computed from the
(static) spatial sizes, the odd pixel at the end as in TF: ``auto_pad`` is not used, since its
SAME_UPPER/SAME_LOWER handling has differed between ONNX consumers. That matters for the stride-2
max-pools on even sizes (74 -> 37 at 299: pads 0 before, 1 after).

Tensors are named after the Keras layer whose output they are (a folded convolution's output after
its BatchNormalization, ``block1_conv1_bn``), so an intermediate can be compared with Keras'.

    from xception_cli.export.onnx_graph import build_onnx, save_onnx
    save_onnx(build_onnx(weights), "xception.onnx")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config
from ..fused import fold
from ..model import check_graph_weights, xception_graph
from .inputs import check_input_kind

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax-13: normalises along one axis (earlier versions flattened from `axis` on)
INPUT_NAME = "input_image"
FEATURES_NAME = "features"
PRODUCER = "xception-cli"
_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)
_PROTOBUF_LIMIT = 2**31  # bytes: a larger model needs external data, which save_onnx does not write


@dataclass(frozen=True)
class Tensor:
    """A value in the graph being built: its ONNX name, channels and (NCHW) spatial size;
    ``height``/``width`` are ``None`` once pooled to ``(N, C)``."""

    name: str
    channels: int
    height: int | None = None
    width: int | None = None


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one spatial axis as ``(begin, end)``: the output has
    ``ceil(size / stride)`` positions and the odd pixel of padding goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _out_size(size: int, kernel: int, stride: int, begin: int, end: int) -> int:
    return (size + begin + end - kernel) // stride + 1


class OnnxOps:
    """``xception_graph``'s operations as ONNX nodes (NCHW) over folded copies of the weights.

    ``weights``: ``{layer name: [arrays]}`` with the names and weight order of the Keras model.
    Built nodes and initializers accumulate in ``nodes`` and ``initializers`` (graph order).
    """

    def __init__(self, weights: dict[str, list[np.ndarray]]):
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"ONNX graph: the name {name!r} is used twice")
        self._names.add(name)
        return name

    def _const(self, name: str, array) -> str:
        from onnx import numpy_helper

        array = np.ascontiguousarray(array, dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, self._unique(name)))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str | None = None, **attrs) -> str:
        """Append one node with a single output ``output`` (also its name unless ``name``)."""
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [self._unique(output)], name=name or output, **attrs))
        return output

    def _conv(self, x: Tensor, kernel_oihw: np.ndarray, bias, output: str, name: str, stride: int, padding: str,
              group: int = 1) -> Tensor:
        filters, _, kh, kw = kernel_oihw.shape
        if padding == "same":
            ph, pw = same_pads(x.height, kh, stride), same_pads(x.width, kw, stride)
        elif padding == "valid":
            ph = pw = (0, 0)
        else:
            raise ValueError(f"unsupported padding {padding!r}")
        inputs = [x.name, self._const(f"{name}/kernel", kernel_oihw)]
        if bias is not None:
            inputs.append(self._const(f"{name}/bias", bias))
        self.node("Conv", inputs, output, name=name, kernel_shape=[kh, kw], strides=[stride, stride],
                  pads=[ph[0], pw[0], ph[1], pw[1]], dilations=[1, 1], group=group)
        return Tensor(output, filters, _out_size(x.height, kh, stride, *ph), _out_size(x.width, kw, stride, *pw))

    def conv_bn(self, x: Tensor, filters, kernel, name, bn_name, strides=1, padding="valid") -> Tensor:
        (k,) = self.weights[name]
        k, b = fold(k, *self.weights[bn_name])
        # HWIO -> OIHW; the node is the convolution, its output the BatchNormalization's
        return self._conv(x, k.transpose(3, 2, 0, 1), b, bn_name, name, strides, padding)

    def sepconv_bn(self, x: Tensor, filters, name) -> Tensor:
        depthwise, pointwise = self.weights[name]
        pointwise, b = fold(pointwise, *self.weights[f"{name}_bn"])
        kh, kw, channels, multiplier = depthwise.shape
        # (kh, kw, C, multiplier) -> a grouped convolution's [C * multiplier, 1, kh, kw]
        dw = np.asarray(depthwise, np.float32).transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
        y = self._conv(x, dw, None, f"{name}_depthwise", f"{name}_depthwise", 1, "same", group=channels)
        return self._conv(y, pointwise.transpose(3, 2, 0, 1), b, f"{name}_bn", f"{name}_pointwise", 1, "valid")

    def relu(self, x: Tensor, name) -> Tensor:
        return Tensor(self.node("Relu", [x.name], name), x.channels, x.height, x.width)

    def maxpool(self, x: Tensor, name) -> Tensor:
        ph, pw = same_pads(x.height, 3, 2), same_pads(x.width, 3, 2)
        # MaxPool's padding never wins the max, as in TensorFlow's SAME max-pool
        self.node("MaxPool", [x.name], name, kernel_shape=[3, 3], strides=[2, 2], pads=[ph[0], pw[0], ph[1], pw[1]])
        return Tensor(name, x.channels, _out_size(x.height, 3, 2, *ph), _out_size(x.width, 3, 2, *pw))

    def add(self, x: Tensor, y: Tensor, name) -> Tensor:
        if (x.channels, x.height, x.width) != (y.channels, y.height, y.width):
            raise ValueError(f"{name}: cannot add {x} and {y}")
        return Tensor(self.node("Add", [x.name, y.name], name), x.channels, x.height, x.width)

    def _global(self, op: str, x: Tensor, name) -> Tensor:
        pooled = self.node(op, [x.name], f"{name}_nchw")  # (N, C, 1, 1)
        return Tensor(self.node("Flatten", [pooled], name, axis=1), x.channels)

    def avg_pool(self, x: Tensor, name) -> Tensor:
        return self._global("GlobalAveragePool", x, name)

    def max_pool(self, x: Tensor, name) -> Tensor:
        return self._global("GlobalMaxPool", x, name)

    def dense(self, x: Tensor, units, activation, name) -> Tensor:
        if activation not in (None, "linear", "softmax"):
            raise ValueError(f"unsupported classifier activation for ONNX: {activation!r}")
        kernel, bias = self.weights[name]
        logits = name if activation in (None, "linear") else f"{name}_logits"
        self.node("Gemm", [x.name, self._const(f"{name}/kernel", kernel), self._const(f"{name}/bias", bias)],
                  logits, name=name if logits == name else f"{name}_gemm")
        if activation == "softmax":
            self.node("Softmax", [logits], name, axis=1)
        return Tensor(name, units)


def build_onnx(
    weights: dict[str, list[np.ndarray]],
    include_top: bool = True,
    pooling: str | None = None,
    input_size: int = config.IMAGENET_INPUT_SIZE,
    classes: int | None = None,
    classifier_activation: str | None = "softmax",
    opset: int = DEFAULT_OPSET,
    input_kind: str = "float",
):
    """The Xception ``onnx.ModelProto`` over ``weights``, checked with ``onnx.checker``.

    Input ``input_image``: NHWC float32 ``["N", input_size, input_size, 3]`` in ``[-1, 1]``; with
    ``input_kind="uint8"``, uint8 RGB pixels, scaled inside as ``to_input`` does (Cast, Div, Add).
    Output ``predictions`` ``(N, classes)`` with the top (probabilities; logits with
    ``classifier_activation=None``), ``avg_pool``/``max_pool`` ``(N, 2048)`` with ``pooling``,
    else ``features``, the NHWC feature map ``(N, h, w, 2048)``.

    ``classes`` defaults to the size of ``weights["predictions"]``. ``ValueError`` names the
    first layer missing from ``weights`` or with the wrong shapes.
    """
    import onnx
    from onnx import TensorProto, helper

    from .. import __version__

    if classifier_activation not in (None, "linear", "softmax"):
        raise ValueError(f"unsupported classifier activation for ONNX: {classifier_activation!r}")
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest}, got {opset!r}")
    height, width, classes = check_graph_weights(weights, include_top, pooling, input_size, classes)
    pixels = check_input_kind(input_kind) == "uint8"

    ops = OnnxOps(weights)
    ops._unique(INPUT_NAME)
    x = _scaled_pixels(ops, INPUT_NAME) if pixels else INPUT_NAME
    x = Tensor(ops.node("Transpose", [x], f"{INPUT_NAME}_nchw", perm=list(_NHWC_TO_NCHW)), 3, height, width)
    y = xception_graph(x, ops, include_top=include_top, pooling=pooling, classes=classes,
                       classifier_activation=classifier_activation)
    if y.height is None:
        output_shape = ["N", y.channels]
    else:
        ops.node("Transpose", [y.name], FEATURES_NAME, perm=list(_NCHW_TO_NHWC))
        y = Tensor(FEATURES_NAME, y.channels, y.height, y.width)
        output_shape = ["N", y.height, y.width, y.channels]

    graph = helper.make_graph(
        ops.nodes, "xception",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8 if pixels else TensorProto.FLOAT,
                                       ["N", height, width, 3])],
        [helper.make_tensor_value_info(y.name, TensorProto.FLOAT, output_shape)],
        initializer=ops.initializers,
    )
    # the lowest IR version that carries this opset: readable by the oldest runtimes that know it
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", opset)],
                                          producer_name=PRODUCER, producer_version=__version__)
    head = ("the ImageNet classifier" if include_top else f"{pooling} pooling" if pooling else "the feature map")
    model.doc_string = (
        f"Xception (Chollet, CVPR 2017) up to {head}, BatchNormalization folded into the convolutions. "
        f"Input {INPUT_NAME}: "
        + (f"uint8 NHWC (N, {height}, {width}, 3), RGB pixels, scaled inside to [-1, 1] (x / 127.5 - 1). "
           if pixels else f"float32 NHWC (N, {height}, {width}, 3), RGB scaled to [-1, 1] (x / 127.5 - 1). ")
        + f"Output {y.name}: {output_shape}."
    )
    helper.set_model_props(model, {"input_layout": "NHWC", "input_kind": input_kind,
                                   "input_scaling": "inside the model" if pixels else "x / 127.5 - 1",
                                   "include_top": str(include_top), "pooling": str(pooling),
                                   "input_size": str(input_size)})
    onnx.checker.check_model(model, full_check=True)  # full_check: also runs strict shape inference
    return model


def _scaled_pixels(ops: OnnxOps, name: str, cfg: config.PreprocessConfig = config.DEFAULT_PREPROCESS) -> str:
    """uint8 pixels ``name`` scaled as ``preprocess.to_input``: float32, ``/ scale``, ``+ offset``
    (the same float32 operations in the same order: the same values)."""
    from onnx import TensorProto

    x = ops.node("Cast", [name], f"{name}_float", to=TensorProto.FLOAT)
    x = ops.node("Div", [x, ops._const(f"{name}/scale", cfg.scale)], f"{name}_divided")
    return ops.node("Add", [x, ops._const(f"{name}/offset", cfg.offset)], f"{name}_scaled")


def onnx_bytes(model) -> bytes:
    """``model`` serialized as one self-contained ``.onnx`` file (weights inside)."""
    data = model.SerializeToString()
    if len(data) >= _PROTOBUF_LIMIT:
        raise ValueError(f"the ONNX model is {len(data) / 2**30:.1f} GiB, over protobuf's 2 GiB limit")
    return data


def save_onnx(model, path: str | os.PathLike) -> Path:
    """Write ``model`` as one self-contained ``.onnx`` file (weights inside), published whole
    through the output layer (``output.target``: a private staging folder, never a fixed
    temporary name); the path."""
    from ..output.target import write_bytes

    path = Path(path)
    data = onnx_bytes(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(str(path), data)
    return path
