"""The ``xception`` command: a thin Click shell over the library.

Nothing at module level imports TensorFlow or Keras (``xception --help`` stays instant); each
command imports what it needs when it runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import click

from . import __version__
from .config import IMAGENET_INPUT_SIZE, MIN_INPUT_SIZE, RESIZE_MODES

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG_ENV = "XCEPTION_DEBUG"


class FatalError(click.ClickException):
    """Weights, inputs or set-up errors: one line on stderr, exit code 2."""

    exit_code = 2


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def friendly_errors(fn):
    """Turn library errors into one-line messages (``XCEPTION_DEBUG=1`` shows the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .preprocess import ImageError
        from .weights import WeightsError

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:  # before any work was done (e.g. while TensorFlow loads)
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (`xception predict dir | head`): stop quietly, as Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except (WeightsError, ImageError, ValueError, OSError) as e:
            if os.environ.get(DEBUG_ENV):
                raise
            raise FatalError(_one_line(e)) from None
        except Exception as e:  # noqa: BLE001 - last line of defence: no tracebacks for users
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {_one_line(e)} (set {DEBUG_ENV}=1 for details)"
            ) from None

    return wrapper


def weights_option(default="imagenet"):
    return click.option(
        "--weights", default=default, show_default=True, metavar="imagenet|PATH|none",
        help="ImageNet weights ($XCEPTION_WEIGHTS, the Keras cache, or a download), a weights file "
        "(.h5, .weights.h5, .keras), or 'none' for random weights.",
    )


precision_option = click.option(
    "--precision", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True,
    help="Compute precision; bfloat16 uses Keras mixed precision (fast only on CPUs with AMX/AVX512-BF16).",
)


def output_options(formats):
    """``-f/--format`` and ``-o/--output``, shared by every command that prints results."""

    def decorator(fn):
        fn = click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                          help="Write to FILE instead of stdout (format from its extension unless -f).")(fn)
        fn = click.option("-f", "--format", "fmt", type=click.Choice(formats), default=None,
                          help=f"Output format [{'|'.join(formats)}]; default: table on a terminal, "
                          f"{'jsonl' if 'jsonl' in formats else 'json'} otherwise.")(fn)
        return fn

    return decorator


def pick_format(fmt: str | None, output: str | None, formats, machine_default: str) -> str:
    from .output import format_for_path

    if fmt:
        return fmt
    if output:
        guessed = format_for_path(output)
        return guessed if guessed in formats else machine_default
    return "table" if sys.stdout.isatty() else machine_default


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def warn(message: str, console=None) -> None:
    if console is not None:
        console.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)
    else:
        click.echo(f"warning: {message}", err=True)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="xception")
def cli():
    """Classify images with Xception (ImageNet, 1000 classes) on Keras 3.

    \b
    Examples:
      xception predict cat.jpg                    top-5 labels as a table
      xception predict ~/Photos -o labels.jsonl   a whole folder, streamed, resumable
      xception summary                            the 3 flows and 14 blocks
      xception benchmark                          how fast it runs here

    Set XCEPTION_DEBUG=1 to see full tracebacks.
    """


# ---------------------------------------------------------------------------------------------
# predict


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("-k", "--top-k", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Number of labels per image.")
@output_options(["table", "json", "jsonl", "csv"])
@click.option("-b", "--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Images per model call.")
@click.option("-j", "--workers", type=click.IntRange(1, 64), default=None,
              help="Decoding threads [default: one per core, 2-8].")
@weights_option()
@click.option("--resize", type=click.Choice(RESIZE_MODES), default="center-crop", show_default=True,
              help="center-crop: short side to 299/0.875 then the centre 299x299 (bicubic); "
              "squash: straight to 299x299.")
@precision_option
@click.option("--resume", is_flag=True,
              help="With -o FILE (jsonl/csv): skip inputs already classified there, retry failures, append.")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@friendly_errors
def predict(inputs, top_k, fmt, output, batch_size, workers, weights, resize, precision, resume, no_progress):
    """Classify images: files, folders (recursive) and glob patterns.

    \b
    Examples:
      xception predict cat.jpg
      xception predict ~/Photos -o labels.jsonl
      xception predict 'shots/**/*.png' -f csv -k 3 > labels.csv
      xception predict ~/Photos -o labels.jsonl --resume

    Results go to stdout or -o FILE; progress and warnings go to stderr. A file that cannot be
    read becomes an error record and the rest go on. Exit status: 0 all classified, 1 some
    inputs failed, 2 usage, weights or no-input errors, 130 interrupted.
    """
    from .predict_cmd import run_predict

    code = run_predict(
        inputs=list(inputs), top_k=top_k, fmt=pick_format(fmt, output, ("table", "json", "jsonl", "csv"), "jsonl"),
        output=output, batch_size=batch_size, workers=workers, weights=weights, resize=resize,
        precision=precision, resume=resume,
        progress=not no_progress and stderr_is_terminal(),
    )
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# summary


@cli.command(context_settings=CONTEXT)
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
    from .render import console
    from .summary_cmd import build_summary, compare_totals, to_csv, to_json

    fmt = pick_format(fmt, output, ("table", "json", "csv"), "json")
    s = build_summary(input_size)
    cmp = {compare: compare_totals(compare, input_size)} if compare else None
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(s, layers, cmp))
        elif fmt == "csv":
            stream.write(to_csv(s, layers))
        else:
            from .summary_cmd import render_tables

            render_tables(s, layers, cmp, console(file=stream))


# ---------------------------------------------------------------------------------------------
# benchmark


def _batch_list(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 1,8,32, got {value!r}") from None
    if not sizes or min(sizes) < 1 or max(sizes) > 1024:
        raise click.BadParameter(f"batch sizes must be between 1 and 1024, got {value!r}")
    return sizes


@cli.command(context_settings=CONTEXT)
@click.option("-b", "--batch-size", "batch_sizes", default="1,8,32", show_default=True, callback=_batch_list,
              help="Batch sizes to time, comma-separated.")
@click.option("--warmup", type=click.IntRange(0, 1000), default=2, show_default=True,
              help="Untimed calls before measuring each batch size.")
@click.option("-n", "--iterations", type=click.IntRange(1, 100000), default=10, show_default=True,
              help="Timed calls per batch size.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time each batch size for this long instead of a number of iterations.")
@precision_option
@click.option("--compare-precision", is_flag=True, help="Run float32 and bfloat16 on the same inputs and compare.")
@click.option("--model", type=click.Choice(["xception", "inception-v3"]), default="xception", show_default=True,
              help="inception-v3: keras.applications.InceptionV3 with random weights, measured the same way.")
@click.option("--mode", type=click.Choice(["inference", "train"]), default="inference", show_default=True,
              help="train: one SGD step (forward, backward, update) per call.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="TensorFlow intra-op threads [default: all cores].")
@click.option("--images", type=click.Path(exists=True), default=None,
              help="Also run the real predict pipeline over this folder (decode vs model time, overlap).")
@weights_option(default="none")
@output_options(["table", "json"])
@friendly_errors
def benchmark(batch_sizes, warmup, iterations, seconds, precision, compare_precision, model, mode, threads,
              images, weights, fmt, output):
    """How fast Xception runs here, and why.

    \b
    Examples:
      xception benchmark
      xception benchmark -b 8 --compare-precision
      xception benchmark --model inception-v3 --mode train -b 8
      xception benchmark --images ~/Photos -f json -o bench.json

    Random inputs and random weights by default (speed does not depend on the values; nothing
    is downloaded). Warm-up calls are kept apart from the timed ones; latencies are reported as
    percentiles; cold start (import, build, weights) and the first call (tracing) separately.
    """
    from .bench import run_benchmark
    from .discovery import discover

    paths = None
    if images:
        paths = discover([images]).paths
        if not paths:
            raise FatalError(f"{images}: no images found")
    fmt = pick_format(fmt, output, ("table", "json"), "json")
    progress = (lambda msg: click.echo(msg, err=True)) if stderr_is_terminal() else None
    result = run_benchmark(
        model=model, batch_sizes=batch_sizes, warmup=warmup, iterations=None if seconds else iterations,
        seconds=seconds, precision=precision, compare_precision=compare_precision, mode=mode,
        weights=None if weights.lower() == "none" else weights, threads=threads, images=paths, log=progress,
    )
    with open_output(output) as stream:
        if fmt == "json":
            import json

            stream.write(json.dumps(result, indent=2) + "\n")
        else:
            from .benchmark_render import render
            from .render import console

            render(result, console(file=stream))


@contextlib.contextmanager
def open_output(output):
    """``-o FILE`` opened for writing, or stdout."""
    if output:
        with open(output, "w", encoding="utf-8", newline="") as f:
            yield f
    else:
        yield sys.stdout


def main() -> None:
    cli(prog_name="xception")
