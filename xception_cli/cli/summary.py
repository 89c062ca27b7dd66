"""``xception summary``: the architecture's table; the work is ``summary_cmd`` (no Click there)."""

from __future__ import annotations

import click

from ..config import IMAGENET_INPUT_SIZE, MIN_INPUT_SIZE
from .common import CONTEXT, friendly_errors, open_output, output_options, pick_format


@click.command(context_settings=CONTEXT)
@output_options(["table", "json", "csv"])
@click.option("--layers", is_flag=True, help="One row per layer (name, type, output, params, MACs).")
@click.option("--input-size", type=click.IntRange(min=MIN_INPUT_SIZE), default=IMAGENET_INPUT_SIZE,
              show_default=True, help="Input side in pixels; other than 299 leaves out the ImageNet top.")
@click.option("--compare", type=click.Choice(["inception-v3"]), default=None,
              help="Add another architecture's totals (random weights, never downloaded).")
@friendly_errors
def summary(fmt, output, layers, input_size, compare):
    """The architecture: 3 flows and 14 blocks with shapes, parameters and multiply-adds.

    \b
    Examples:
      xception summary
      xception summary --layers
      xception summary --compare inception-v3
      xception summary --input-size 71 -f json

    Needs no weights and never downloads.
    """
    from ..render import console
    from ..summary_cmd import build_summary, compare_totals, to_csv, to_json

    fmt = pick_format(fmt, output, ("table", "json", "csv"), "json")
    s = build_summary(input_size)
    cmp = {compare: compare_totals(compare, input_size)} if compare else None
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(s, layers, cmp))
        elif fmt == "csv":
            stream.write(to_csv(s, layers))
        else:
            from ..summary_cmd import render_tables

            render_tables(s, layers, cmp, console(file=stream))
