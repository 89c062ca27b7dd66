"""``xception benchmark``: options and rendering; the measuring is ``bench`` (no Click there)."""

from __future__ import annotations

import click

from .common import (
    CONTEXT,
    FatalError,
    friendly_errors,
    open_output,
    output_options,
    pick_format,
    precision_option,
    refuse_an_input_as_output,
    runtime_option,
    stderr_is_terminal,
    weights_option,
)


def _batch_list(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 1,8,32, got {value!r}") from None
    if not sizes or min(sizes) < 1 or max(sizes) > 1024:
        raise click.BadParameter(f"batch sizes must be between 1 and 1024, got {value!r}")
    return sizes


@click.command(context_settings=CONTEXT)
@click.option("-b", "--batch-size", "batch_sizes", default="1,8,32", show_default=True, callback=_batch_list,
              help="Batch sizes to time, comma-separated.")
@click.option("--warmup", type=click.IntRange(0, 1000), default=2, show_default=True,
              help="Untimed calls before measuring each batch size.")
@click.option("-n", "--iterations", type=click.IntRange(1, 100000), default=10, show_default=True,
              help="Timed calls per batch size.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time each batch size for this long instead of a number of iterations.")
@precision_option
@runtime_option
@click.option("--compare-precision", is_flag=True, help="Run float32 and bfloat16 on the same inputs and compare.")
@click.option("--model", type=click.Choice(["xception", "inception-v3"]), default="xception", show_default=True,
              help="inception-v3: keras.applications.InceptionV3 with random weights, measured the same way.")
@click.option("--mode", type=click.Choice(["inference", "train"]), default="inference", show_default=True,
              help="train: one SGD step (forward, backward, update) per call.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="TensorFlow intra-op threads (TensorFlow runtime, training, Inception-v3) [default: all cores].")
@click.option("--images", type=click.Path(exists=True), default=None,
              help="Also run the real predict pipeline over this folder (decode vs model time, overlap).")
@weights_option(default="none")
@click.option("--compare-weights", default=None, metavar="PATH",
              help="Time a second weights file too (e.g. an INT8 IR), with top-1 agreement and max |dp| "
              "against --weights on --images.")
@output_options(["table", "json"])
@friendly_errors
def benchmark(batch_sizes, warmup, iterations, seconds, precision, runtime, compare_precision, model, mode,
              threads, images, weights, compare_weights, fmt, output):
    """How fast Xception runs here, and why.

    \b
    Examples:
      xception benchmark
      xception benchmark -b 8 --compare-precision
      xception benchmark --model inception-v3 --mode train -b 8
      xception benchmark --images ~/Photos -f json -o bench.json
      xception benchmark --runtime tensorflow -b 1,8
      xception benchmark --images ~/Photos --weights x.xml --compare-weights x-int8.xml

    Random inputs and random weights by default (speed does not depend on the values; nothing
    is downloaded). Warm-up calls are kept apart from the timed ones; latencies are reported as
    percentiles; cold start (import, build, weights) and the first call (tracing) separately.
    """
    from ..bench import run_benchmark
    from ..discovery import discover
    from ..weights import RANDOM, normalize_weights

    paths = None
    if images:
        paths = discover([images]).paths
        if not paths:
            raise FatalError(f"{images}: no images found")
    from ..weights import weights_files

    refuse_an_input_as_output(output, [*weights_files(weights), *weights_files(compare_weights), *(paths or [])])
    fmt = pick_format(fmt, output, ("table", "json"), "json")
    progress = (lambda msg: click.echo(msg, err=True)) if stderr_is_terminal() else None
    result = run_benchmark(
        model=model, batch_sizes=batch_sizes, warmup=warmup, iterations=None if seconds else iterations,
        seconds=seconds, precision=precision, compare_precision=compare_precision, mode=mode,
        weights=None if normalize_weights(weights) == RANDOM else weights, threads=threads, images=paths,
        log=progress, runtime=runtime, compare_weights=compare_weights,
    )
    for note in result.get("notes", ()):
        click.echo(f"warning: {note}", err=True)
    with open_output(output) as stream:
        if fmt == "json":
            import json

            stream.write(json.dumps(result, indent=2) + "\n")
        else:
            from ..benchmark_render import render
            from ..render import console

            render(result, console(file=stream))
