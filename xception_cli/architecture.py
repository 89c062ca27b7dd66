"""The architecture in numbers: per-layer and per-block parameters and multiply-adds (MACs).

Works on any built Keras model; Xception's layers are grouped into the 3 flows and 14 blocks by
their names (``blockN_...``; the residual convolution, its BatchNormalization and the ``Add``
belong to the block they feed). MACs follow FACTS.md: Conv2D ``Ho*Wo*Kh*Kw*Cin*Cout``;
SeparableConv2D ``Ho*Wo*Kh*Kw*Cin + Ho*Wo*Cin*Cout``; Dense ``Cin*Cout``; BatchNormalization,
pooling, activations and adds are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .model import block_of, flow_of


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
