"""``xception summary``: the architecture as a table of flows and blocks (or JSON / CSV)."""

from __future__ import annotations

import csv
import io
import json

from .architecture import ArchitectureSummary, separable_vs_regular, summarize, totals
from .config import IMAGENET_INPUT_SIZE

COMPARE_MODELS = ("inception-v3",)


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def shape_str(shape) -> str:
    return "x".join(str(d) for d in shape)


def build_summary(input_size: int = IMAGENET_INPUT_SIZE) -> ArchitectureSummary:
    from .engine import architecture

    return summarize(architecture(input_size))


def compare_totals(name: str, input_size: int) -> dict:
    import keras

    if name == "inception-v3":
        if input_size < 75:
            raise ValueError(f"Inception-v3 needs an input of at least 75x75, got {input_size}")
        top = input_size == IMAGENET_INPUT_SIZE
        model = keras.applications.InceptionV3(
            weights=None, include_top=top, input_shape=(input_size, input_size, 3))
        return {"model": name, "input_shape": [input_size, input_size, 3], "include_top": top, **totals(model)}
    raise ValueError(f"unknown model to compare: {name!r}")


def to_json(s: ArchitectureSummary, layers: bool, compare: dict | None) -> str:
    d = s.to_dict(with_layers=layers)
    if compare:
        d["compare"] = compare
    return json.dumps(d, indent=2) + "\n"


BLOCK_CSV = ("block", "flow", "output_shape", "params", "macs", "separable_convs",
             "regular_equivalent_params", "regular_equivalent_macs")
LAYER_CSV = ("block", "layer", "type", "output_shape", "params", "macs")


def to_csv(s: ArchitectureSummary, layers: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if layers:
        w.writerow(LAYER_CSV)
        for i in s.layers:
            w.writerow([i.block if i.block is not None else ("" if i.type == "InputLayer" else "top"),
                        i.name, i.type, shape_str(i.output_shape), i.params, i.macs])
        return buf.getvalue()
    w.writerow(BLOCK_CSV)
    for b in s.blocks:
        w.writerow([b.block, b.flow, shape_str(b.output_shape), b.params, b.macs, b.separable_convs,
                    b.regular_equivalent_params, b.regular_equivalent_macs])
    if s.top:
        w.writerow(["top", "", shape_str(s.top["output_shape"]), s.top["params"], s.top["macs"], 0, 0, 0])
    w.writerow(["total", "", "", s.total_params, s.macs, sum(b.separable_convs for b in s.blocks),
                sum(b.regular_equivalent_params for b in s.blocks), sum(b.regular_equivalent_macs for b in s.blocks)])
    return buf.getvalue()


def render_tables(s: ArchitectureSummary, layers: bool, compare: dict | None, console) -> None:
    from .render import fitted_table, table

    size = f"{s.input_shape[0]}x{s.input_shape[1]}"
    top_note = "" if s.include_top else f"; the ImageNet top is left out (it needs 299x299, input is {size})"
    if layers:
        rows, sections = [], []
        last = None
        for i in s.layers:
            block = i.block if i.block is not None else ("" if i.type == "InputLayer" else "top")
            if last is not None and block != last:
                sections.append(len(rows) - 1)
            last = block
            rows.append([block, i.name, i.type, shape_str(i.output_shape), f"{i.params:,}", f"{i.macs:,}"])
        console.print(fitted_table(
            console, ["Block", "Layer", "Type", "Output", ("Params", "right"), ("MACs", "right")], rows,
            drop=(2, 0), title=f"Xception, {len(s.layers)} layers, input {size}x3", sections=sections,
            footer=["", "Total", "", "", f"{s.total_params:,}", f"{s.macs:,}"],
            caption="MACs per image; BatchNormalization, pooling, activations and adds are not counted"
            + top_note + "."))
    else:
        rows, sections = [], []
        for b in s.blocks:
            saving = f"{b.saving:.1f}x" if b.saving else ""
            rows.append([
                f"{b.block}" + (" (stem)" if b.block == 1 else ""), b.flow, shape_str(b.output_shape),
                f"{b.params:,}", human(b.macs), b.separable_convs or "",
                f"{b.regular_equivalent_params:,}" if b.separable_convs else "",
                human(b.regular_equivalent_macs) if b.separable_convs else "", saving,
            ])
            if b.block in (4, 12):
                sections.append(len(rows) - 1)
        if s.top:
            sections.append(len(rows) - 1)
            rows.append(["top", "avg pool + dense", shape_str(s.top["output_shape"]), f"{s.top['params']:,}",
                         human(s.top["macs"]), "", "", "", ""])
        n_sep = sum(b.separable_convs for b in s.blocks)
        sep_params = sum(b.separable_params for b in s.blocks)
        reg_params = sum(b.regular_equivalent_params for b in s.blocks)
        reg_macs = sum(b.regular_equivalent_macs for b in s.blocks)
        example = separable_vs_regular(16, 32)
        columns = ["Block", "Flow", "Output", ("Params", "right"), ("MACs", "right"), ("Sep. convs", "right"),
                   ("Regular-conv params", "right"), ("Regular-conv MACs", "right"), ("Saving", "right")]
        footer = ["Total", "", "", f"{s.total_params:,}", human(s.macs), n_sep, f"{reg_params:,}",
                  human(reg_macs), f"{reg_params / sep_params:.1f}x" if sep_params else ""]
        caption = (
            f"{s.trainable_params:,} trainable + {s.non_trainable_params:,} non-trainable parameters; "
            f"{s.macs:,} multiply-adds per image. The residual convolution, its BatchNormalization and "
            "the Add count in the block they feed. Regular-conv columns: what the block's separable "
            "convolutions would cost as regular convolutions of the same shape (e.g. 16->32 channels, "
            f"3x3: {example.regular_params:,} weights instead of {example.params:,}){top_note}."
        )
        title = f"Xception: 3 flows, 14 blocks, input {size}x3"
        console.print(fitted_table(console, columns, rows, drop=(8, 7, 6), title=title, sections=sections,
                                   footer=footer, caption=caption))
    if compare:
        rows = [["xception", size, f"{s.total_params:,}", human(s.macs), "1.00x"]]
        for name, c in compare.items():
            rows.append([name, shape_str(c["input_shape"][:2]), f"{c['params']:,}", human(c["macs"]),
                         f"{c['macs'] / s.macs:.2f}x"])
        console.print(table(["Model", "Input", ("Params", "right"), ("MACs", "right"), ("MACs vs Xception", "right")],
                            rows, title="Compute compared (random weights, nothing downloaded)"))
