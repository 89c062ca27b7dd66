"""The architecture in numbers: per-layer and per-block parameters and multiply-adds (MACs).

Works on any built Keras model; Xception's layers are grouped into the 3 flows and 14 blocks by
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
from .model import block_of, flow_of

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
    """Group ``model``'s layers into Xception's blocks and add everything up."""
    infos = layer_infos(model)
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
        model=name, input_shape=_shape(model.input), include_top=include_top,
        total_params=total, trainable_params=trainable, non_trainable_params=total - trainable,
        macs=sum(i.macs for i in infos), blocks=[blocks[k] for k in sorted(blocks)], top=top, layers=infos,
    )


def totals(model) -> dict:
    """Parameters and MACs of any Keras model (for comparisons such as Inception-v3)."""
    infos = layer_infos(model)
    return {"params": sum(i.params for i in infos), "macs": sum(i.macs for i in infos), "layers": len(infos)}


def build_summary(input_size: int = IMAGENET_INPUT_SIZE) -> ArchitectureSummary:
    """Xception's summary at ``input_size`` (random weights: nothing is read or downloaded)."""
    from .engine import architecture

    return summarize(architecture(input_size))


def compare_totals(name: str, input_size: int) -> dict:
    """Another architecture's totals at ``input_size`` (one of ``COMPARE_MODELS``, random weights)."""
    import keras

    if name == "inception-v3":
        if input_size < 75:
            raise ValueError(f"Inception-v3 needs an input of at least 75x75, got {input_size}")
        top = input_size == IMAGENET_INPUT_SIZE
        model = keras.applications.InceptionV3(
            weights=None, include_top=top, input_shape=(input_size, input_size, 3))
        return {"model": name, "input_shape": [input_size, input_size, 3], "include_top": top, **totals(model)}
    raise ValueError(f"unknown model to compare: {name!r}")
