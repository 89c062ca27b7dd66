"""``xception summary``: the architecture's numbers (``architecture.py``) as tables, JSON or CSV."""

from __future__ import annotations

import click

from ..architecture import COMPARE_MODELS, ArchitectureSummary, block_name, separable_vs_regular, shape_str
from ..config import IMAGENET_INPUT_SIZE, MIN_INPUT_SIZE
from .common import CONTEXT, friendly_errors, output_options, pick_format, report_output


@click.command(context_settings=CONTEXT)
@output_options(["table", "json", "csv"])
@click.option("--layers", is_flag=True, help="One row per layer (name, type, output, params, MACs).")
@click.option("--input-size", type=click.IntRange(min=MIN_INPUT_SIZE), default=IMAGENET_INPUT_SIZE,
              show_default=True, help="Input side in pixels; other than 299 leaves out the ImageNet top.")
@click.option("--compare", type=click.Choice(COMPARE_MODELS), default=None,
              help="Add another architecture's totals (random weights, never downloaded; built with Keras, "
              "so it takes seconds where the rest needs neither Keras nor TensorFlow).")
@friendly_errors
def summary(fmt, output, layers, input_size, compare):
    """The architecture: 3 flows and 14 blocks with shapes, parameters and multiply-adds.

    \b
    Examples:
      xception summary
      xception summary --layers
      xception summary --compare inception-v3
      xception summary --input-size 71 -f json

    Needs no weights and never downloads; the numbers are propagated from the
    architecture's definition, without TensorFlow (--compare builds the other model in Keras).
    """
    from ..architecture import build_summary, compare_totals
    from .render import console

    fmt = pick_format(fmt, output, ("table", "json", "csv"), "json", "summary")
    s = build_summary(input_size)
    cmp = {compare: compare_totals(compare, input_size)} if compare else None
    with report_output(output) as stream:
        if fmt == "json":
            stream.write(s.to_json(layers, cmp))
        elif fmt == "csv":
            stream.write(s.to_csv(layers))
        else:
            render_tables(s, layers, cmp, console(file=stream))


def human(n: float, unit: str = "") -> str:
    """``n`` in thousands, millions or billions: ``8.36 G``."""
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def render_tables(s: ArchitectureSummary, layers: bool, compare: dict | None, console) -> None:
    """The summary as Rich tables in ``console``: per block (or per layer), and the comparison."""
    from .render import table

    size = f"{s.input_shape[0]}x{s.input_shape[1]}"
    top_note = "" if s.include_top else f"; the ImageNet top is left out (it needs 299x299, input is {size})"
    if layers:
        rows, sections = [], []
        last = None
        for i in s.layers:
            block = block_name(i)
            if last is not None and block != last:
                sections.append(len(rows) - 1)
            last = block
            rows.append([block, i.name, i.type, shape_str(i.output_shape), f"{i.params:,}", f"{i.macs:,}"])
        console.print(table(
            ["Block", "Layer", "Type", "Output", ("Params", "right"), ("MACs", "right")], rows,
            drop=(2, 0), more="-f json", title=f"Xception, {len(s.layers)} layers, input {size}x3", sections=sections,
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
        console.print(table(columns, rows, drop=(8, 7, 6), title=title, sections=sections, footer=footer,
                            caption=caption, more="-f json"))
    if compare:
        rows = [["xception", size, f"{s.total_params:,}", human(s.macs), "1.00x"]]
        for name, c in compare.items():
            rows.append([name, shape_str(c["input_shape"][:2]), f"{c['params']:,}", human(c["macs"]),
                         f"{c['macs'] / s.macs:.2f}x"])
        console.print(table(["Model", "Input", ("Params", "right"), ("MACs", "right"), ("MACs vs Xception", "right")],
                            rows, title="Compute compared (random weights, nothing downloaded)"))
