"""The architecture in numbers: per-layer and per-block parameters and multiply-adds (MACs).

``build_summary`` realises ``model.xception_graph`` once more, on shapes alone (``ShapeOps``):
each layer's output shape, parameters and MACs are propagated from the input size, with no
Keras, no TensorFlow and no weights (``xception summary`` answers in a fraction of a second).
``summarize(model)`` counts the same numbers on any built Keras model (``--compare``, the
benchmark, and the tests' oracle). Xception's layers are grouped into the 3 flows and 14 blocks by
their names (``blockN_...``; the residual convolution, its BatchNormalization and the ``Add``
belong to the block they feed). MACs follow FACTS.md: Conv2D ``Ho*Wo*Kh*Kw*Cin*Cout``;
SeparableConv2D ``Ho*Wo*Kh*Kw*Cin + Ho*Wo*Cin*Cout``; Dense ``Cin*Cout``; BatchNormalization,
pooling, activations and adds are not counted.

``xception summary`` shows these numbers; as JSON and CSV they are written here, as tables in
``cli/summary.py``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

from .config import IMAGENET_INPUT_SIZE
from .model import block_of, flow_of, validate_input_shape, xception_graph

COMPARE_MODELS = ("inception-v3",)  # what `summary --compare` can total beside Xception
BLOCK_CSV = ("block", "flow", "output_shape", "params", "macs", "separable_convs",
             "regular_equivalent_params", "regular_equivalent_macs")
LAYER_CSV = ("block", "layer", "type", "output_shape", "params", "macs")


@dataclass(frozen=True)
class ConvCost:
    """Parameters and MACs of one convolution, and of a regular convolution of the same shape."""

    params: int
    macs: int
    regular_params: int
    regular_macs: int

    @property
    def saving(self) -> float:
        return self.regular_params / self.params if self.params else 1.0


def separable_vs_regular(cin: int, cout: int, kernel: int = 3, out_h: int = 1, out_w: int = 1) -> ConvCost:
    """A depthwise-separable convolution (depthwise ``kernel`` x ``kernel``, then 1x1) vs a regular one.

    The seed's example, 16 -> 32 channels with 3x3 kernels: 656 weights instead of 4,608.
    """
    depthwise = kernel * kernel * cin
    pointwise = cin * cout
    regular = kernel * kernel * cin * cout
    pixels = out_h * out_w
    return ConvCost(depthwise + pointwise, pixels * (depthwise + pointwise), regular, pixels * regular)


@dataclass
class LayerInfo:
    name: str
    type: str
    block: int | None
    output_shape: list[int]
    params: int
    trainable_params: int
    macs: int
    separable: ConvCost | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("separable")
        return d


def _count(weights) -> int:
    total = 0
    for w in weights:
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total


def _shape(tensor) -> list[int]:
    return [int(d) for d in tensor.shape[1:]]


def layer_infos(model) -> list[LayerInfo]:
    """One ``LayerInfo`` per layer of ``model``, in topological order (MACs per image)."""
    infos = []
    for layer in model.layers:
        kind = type(layer).__name__
        out = _shape(layer.output)
        macs, sep = 0, None
        if kind == "Conv2D":
            kh, kw, cin, cout = (int(d) for d in layer.kernel.shape)
            macs = out[0] * out[1] * kh * kw * cin * cout
        elif kind == "SeparableConv2D":
            kh, kw, cin, mult = (int(d) for d in layer.depthwise_kernel.shape)
            cout = int(layer.pointwise_kernel.shape[-1])
            if mult != 1 or kh != kw:
                raise ValueError(f"{layer.name}: only square kernels with depth multiplier 1 are costed")
            sep = separable_vs_regular(cin, cout, kh, out[0], out[1])
            macs = sep.macs
        elif kind == "Dense":
            cin, cout = (int(d) for d in layer.kernel.shape)
            macs = cin * cout
        infos.append(LayerInfo(
            name=layer.name, type=kind, block=block_of(layer.name), output_shape=out,
            params=_count(layer.weights), trainable_params=_count(layer.trainable_weights), macs=macs,
            separable=sep,
        ))
    return infos


@dataclass
class BlockInfo:
    block: int
    flow: str
    output_shape: list[int]
    params: int = 0
    macs: int = 0
    separable_convs: int = 0
    separable_params: int = 0
    separable_macs: int = 0
    regular_equivalent_params: int = 0
    regular_equivalent_macs: int = 0
    layers: list[LayerInfo] = field(default_factory=list, repr=False)

    @property
    def saving(self) -> float | None:
        return self.regular_equivalent_params / self.separable_params if self.separable_params else None

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "layers"}
        d["saving"] = round(self.saving, 2) if self.saving else None
        return d


@dataclass
class ArchitectureSummary:
    model: str
    input_shape: list[int]
    include_top: bool
    total_params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    blocks: list[BlockInfo]
    top: dict | None
    layers: list[LayerInfo]

    def to_dict(self, with_layers: bool = False) -> dict:
        d = {
            "model": self.model, "input_shape": self.input_shape, "include_top": self.include_top,
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params, "macs": self.macs,
            "blocks": [b.to_dict() for b in self.blocks], "top": self.top,
        }
        if with_layers:
            d["layers"] = [layer.to_dict() for layer in self.layers]
        return d

    def to_json(self, with_layers: bool = False, compare: dict | None = None) -> str:
        d = self.to_dict(with_layers)
        if compare:
            d["compare"] = compare
        return json.dumps(d, indent=2) + "\n"

    def to_csv(self, with_layers: bool = False) -> str:
        """One row per block (with the top and the total), or per layer."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if with_layers:
            w.writerow(LAYER_CSV)
            for i in self.layers:
                w.writerow([block_name(i), i.name, i.type, shape_str(i.output_shape), i.params, i.macs])
            return buf.getvalue()
        w.writerow(BLOCK_CSV)
        for b in self.blocks:
            w.writerow([b.block, b.flow, shape_str(b.output_shape), b.params, b.macs, b.separable_convs,
                        b.regular_equivalent_params, b.regular_equivalent_macs])
        if self.top:
            w.writerow(["top", "", shape_str(self.top["output_shape"]), self.top["params"], self.top["macs"], 0, 0, 0])
        w.writerow(["total", "", "", self.total_params, self.macs, sum(b.separable_convs for b in self.blocks),
                    sum(b.regular_equivalent_params for b in self.blocks),
                    sum(b.regular_equivalent_macs for b in self.blocks)])
        return buf.getvalue()


def shape_str(shape) -> str:
    return "x".join(str(d) for d in shape)


def block_name(layer: LayerInfo) -> int | str:
    """The block a layer is shown in: its number, ``top`` after the last block, ``""`` for the input."""
    if layer.block is not None:
        return layer.block
    return "" if layer.type == "InputLayer" else "top"


def summarize(model, name: str = "xception") -> ArchitectureSummary:
    """Group a built Keras ``model``'s layers into Xception's blocks and add everything up."""
    return summarize_layers(layer_infos(model), _shape(model.input), name)


def summarize_layers(infos: list[LayerInfo], input_shape: list[int], name: str = "xception") -> ArchitectureSummary:
    """Group ``infos`` (one per layer, in ``model.layers`` order) into blocks and add everything up."""
    blocks: dict[int, BlockInfo] = {}
    head = [i for i in infos if i.block is None and i.type != "InputLayer"]
    for info in infos:
        if info.block is None:
            continue
        b = blocks.setdefault(info.block, BlockInfo(info.block, flow_of(info.block), info.output_shape))
        b.layers.append(info)
        b.output_shape = info.output_shape  # the block's last layer gives its output
        b.params += info.params
        b.macs += info.macs
        if info.separable:
            b.separable_convs += 1
            b.separable_params += info.separable.params
            b.separable_macs += info.separable.macs
            b.regular_equivalent_params += info.separable.regular_params
            b.regular_equivalent_macs += info.separable.regular_macs
    top = None
    if head:
        top = {
            "layers": [i.name for i in head], "output_shape": head[-1].output_shape,
            "params": sum(i.params for i in head), "macs": sum(i.macs for i in head),
        }
    total = sum(i.params for i in infos)
    trainable = sum(i.trainable_params for i in infos)
    include_top = any(i.type == "Dense" for i in head)
    return ArchitectureSummary(
        model=name, input_shape=list(input_shape), include_top=include_top,
        total_params=total, trainable_params=trainable, non_trainable_params=total - trainable,
        macs=sum(i.macs for i in infos), blocks=[blocks[k] for k in sorted(blocks)], top=top, layers=infos,
    )


def totals(model) -> dict:
    """Parameters and MACs of any Keras model (for comparisons such as Inception-v3)."""
    infos = layer_infos(model)
    return {"params": sum(i.params for i in infos), "macs": sum(i.macs for i in infos), "layers": len(infos)}


def _out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """One spatial side after a convolution or pooling: TensorFlow's "same" and "valid"."""
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


@dataclass(frozen=True)
class Value:
    """A tensor in ``ShapeOps``: its shape without the batch, and the layer that made it."""

    shape: tuple[int, ...]
    layer: int


class ShapeOps:
    """``xception_graph``'s operations on shapes: each Keras layer the graph makes is recorded with
    its output shape, weights and MACs, as ``layer_infos`` counts them on a built model, and the
    layers it reads (for ``ordered``). No Keras, no weights."""

    def __init__(self, input_shape: tuple[int, int, int]):
        self.layers: list[LayerInfo] = []
        self.inputs: list[tuple[int, ...]] = []  # per layer, the layers whose outputs it reads
        self.input = self._layer("input_image", "InputLayer", input_shape, ())

    def _layer(self, name, kind, shape, reads, params=0, trainable=None, macs=0, separable=None) -> Value:
        trainable = params if trainable is None else trainable
        self.layers.append(LayerInfo(name, kind, block_of(name), list(shape), params, trainable, macs, separable))
        self.inputs.append(tuple(v.layer for v in reads))
        return Value(tuple(shape), len(self.layers) - 1)

    def _bn(self, x: Value, name):  # gamma and beta are trained; the moving mean and variance are not
        c = x.shape[-1]
        return self._layer(name, "BatchNormalization", x.shape, [x], 4 * c, trainable=2 * c)

    def conv_bn(self, x: Value, filters, kernel, name, bn_name, strides=1, padding="valid"):
        h, w, cin = x.shape
        h, w = _out_size(h, kernel, strides, padding), _out_size(w, kernel, strides, padding)
        params = kernel * kernel * cin * filters
        return self._bn(self._layer(name, "Conv2D", (h, w, filters), [x], params, macs=h * w * params), bn_name)

    def sepconv_bn(self, x: Value, filters, name):
        h, w, cin = x.shape  # 3x3 depthwise, "same", stride 1
        sep = separable_vs_regular(cin, filters, 3, h, w)
        y = self._layer(name, "SeparableConv2D", (h, w, filters), [x], sep.params, macs=sep.macs, separable=sep)
        return self._bn(y, f"{name}_bn")

    def relu(self, x: Value, name):
        return self._layer(name, "Activation", x.shape, [x])

    def maxpool(self, x: Value, name):
        h, w, c = x.shape
        return self._layer(name, "MaxPooling2D", (_out_size(h, 3, 2, "same"), _out_size(w, 3, 2, "same"), c), [x])

    def add(self, x: Value, y: Value, name):
        if x.shape != y.shape:
            raise ValueError(f"{name}: cannot add shapes {x.shape} and {y.shape}")
        return self._layer(name, "Add", x.shape, [x, y])

    def avg_pool(self, x: Value, name):
        return self._layer(name, "GlobalAveragePooling2D", x.shape[-1:], [x])

    def max_pool(self, x: Value, name):
        return self._layer(name, "GlobalMaxPooling2D", x.shape[-1:], [x])

    def dense(self, x: Value, units, activation, name):
        (cin,) = x.shape
        return self._layer(name, "Dense", (units,), [x], cin * units + units, macs=cin * units)

    def ordered(self) -> list[LayerInfo]:
        """The layers in ``model.layers`` order: Keras lists a functional model's layers by their
        distance from the output, farthest first, and ties in the order the graph reaches them
        (which puts a downsampling block's residual convolution before its max-pool)."""
        depth = [0] * len(self.layers)
        for i in reversed(range(len(self.layers))):  # made in order: readers come after what they read
            for j in self.inputs[i]:
                depth[j] = max(depth[j], depth[i] + 1)
        return [self.layers[i] for i in sorted(range(len(self.layers)), key=lambda i: (-depth[i], i))]


def propagate(input_size: int = IMAGENET_INPUT_SIZE, include_top: bool | None = None) -> list[LayerInfo]:
    """``xception_graph`` propagated on shapes from a square ``input_size`` input: one ``LayerInfo``
    per Keras layer, in ``model.layers`` order (the ImageNet top by default only at 299x299, which
    it needs)."""
    shape = validate_input_shape((input_size, input_size, 3), imagenet_top=bool(include_top))
    if include_top is None:
        include_top = input_size == IMAGENET_INPUT_SIZE
    ops = ShapeOps(shape)
    xception_graph(ops.input, ops, include_top=include_top)
    return ops.ordered()


def build_summary(input_size: int = IMAGENET_INPUT_SIZE) -> ArchitectureSummary:
    """Xception's summary at ``input_size``, propagated from ``xception_graph`` (no Keras, no weights)."""
    return summarize_layers(propagate(input_size), [input_size, input_size, 3])


def compare_totals(name: str, input_size: int) -> dict:
    """Another architecture's totals at ``input_size`` (one of ``COMPARE_MODELS``, random weights)."""
    from .keras_import import import_keras

    import_keras()  # as the command loads Keras (without scikit-learn)
    import keras

    if name == "inception-v3":
        if input_size < 75:
            raise ValueError(f"Inception-v3 needs an input of at least 75x75, got {input_size}")
        top = input_size == IMAGENET_INPUT_SIZE
        model = keras.applications.InceptionV3(
            weights=None, include_top=top, input_shape=(input_size, input_size, 3))
        return {"model": name, "input_shape": [input_size, input_size, 3], "include_top": top, **totals(model)}
    raise ValueError(f"unknown model to compare: {name!r}")
