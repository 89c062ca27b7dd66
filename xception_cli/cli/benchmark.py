"""``xception benchmark``: options and the tables; the measuring is ``benchmark.py`` (no Click there)."""

from __future__ import annotations

import click

from .cacheopt import no_cache_option
from .common import (
    CONTEXT,
    FatalError,
    friendly_errors,
    output_options,
    pick_format,
    precision_option,
    report_output,
    runtime_option,
    said,
    stderr_is_terminal,
    warn,
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
@no_cache_option
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
    from ..benchmark import run_benchmark
    from ..discovery import discover, links_note
    from ..weights import is_random

    paths = None
    if images:
        found = discover([images])  # links out of the folder are not followed (as predict)
        paths = found.paths
        if found.skipped:
            warn(links_note(found.skipped, hint="put the images themselves in the folder"))
        if not paths:
            raise FatalError(f"{images}: no images found")
    from ..weights import weights_files

    progress = (lambda msg: click.echo(said(msg), err=True)) if stderr_is_terminal() else None
    with report_output(output, paths or (), [*weights_files(weights), *weights_files(compare_weights)]) as stream:
        fmt = pick_format(fmt, output, ("table", "json"), "json", "benchmark")  # after the output is checked
        result = run_benchmark(
            model=model, batch_sizes=batch_sizes, warmup=warmup, iterations=None if seconds else iterations,
            seconds=seconds, precision=precision, compare_precision=compare_precision, mode=mode,
            weights=None if is_random(weights) else weights, threads=threads, images=paths,
            log=progress, runtime=runtime, compare_weights=compare_weights,
        )
        for note in result.get("notes", ()):
            warn(note)
        if fmt == "json":
            import json

            stream.write(json.dumps(result, indent=2) + "\n")
        else:
            from .render import console

            render_tables(result, console(file=stream))


def render_tables(result: dict, console) -> None:
    """A benchmark result as people read it: the system, one row per timed run, the comparisons."""
    sysinfo, model = result["system"], result["model"]
    flags = ("onednn", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    feats = ", ".join(f"{k} {'yes' if sysinfo[k] else 'no'}" for k in flags if k in sysinfo)
    versions = [f"Python {sysinfo['python']}"]
    if "runtime" in sysinfo:
        versions.append(f"runtime {sysinfo['runtime']} {sysinfo['runtime_version']} "
                        f"(running {sysinfo['precision_run']})")
    if "tensorflow" in sysinfo:
        versions.append(f"TensorFlow {sysinfo['tensorflow']}, Keras {sysinfo['keras']}, "
                        f"{sysinfo['intra_op_threads']} intra-op threads")
    console.print(
        f"[bold]{model['name']}[/]: {model['params']:,} parameters, {model['macs_per_image'] / 1e9:.2f} G MACs "
        f"per image at {'x'.join(map(str, model['input_shape']))}\n"
        f"{sysinfo['cpu']}, {sysinfo['cores']} cores; {feats}\n"
        + "; ".join(versions) + "\n"
        f"cold start ({_what_started(result)}): {result['cold_start_s']:.2f} s{_breakdown(result)}; "
        f"first call: {result['first_call_s']:.2f} s",
        highlight=False,
    )
    console.print(results_table(result))
    cmp = result.get("comparison")
    if cmp:
        parts = [f"batch {bs}: {x:.2f}x" for bs, x in cmp["speedup_bfloat16_vs_float32"].items()]
        line = "bfloat16 vs float32 speed-up: " + ", ".join(parts)
        if "top1_agreement" in cmp:
            line += (f"; top-1 agreement {cmp['top1_agreement']:.0%} on {cmp['agreement_inputs']}, "
                     f"max |Δp| {cmp['max_abs_probability_difference']:.2g}")
        console.print(line, highlight=False)
        if cmp.get("note"):
            console.print(f"note: {cmp['note']}", highlight=False)
    wc = result.get("weights_comparison")
    if wc:
        parts = [f"batch {bs}: {x:.2f}x" for bs, x in wc["speedup_compare_vs_weights"].items()]
        console.print(
            f"{said(wc['compare_weights'])} ({wc['precision_run']['compare_weights']}) vs {said(wc['weights'])} "
            f"({wc['precision_run']['weights']}): speed-up " + ", ".join(parts)
            + f"; top-1 agreement {wc['top1_agreement']:.0%} on {wc['agreement_inputs']}, "
            f"max |Δp| {wc['max_abs_probability_difference']:.3g}", highlight=False, markup=False)
    for key, what in (("end_to_end", ""), ("end_to_end_compare_weights", " (compared weights)")):
        e2e = result.get(key)
        if not e2e:
            continue
        console.print(
            f"end to end{what} over {e2e['images']} files (batch {e2e['batch_size']}): "
            f"{e2e['images_per_second']:.2f} images/s; "
            f"decode+preprocess {e2e['decode_ms_per_image']:.1f} ms/image, model {e2e['model_ms_per_image']:.1f} "
            f"ms/image; {e2e['decode_hidden_fraction']:.0%} of decoding hidden behind the model",
            highlight=False,
        )


# The columns of the results table, and the order they are left out in when the terminal is narrow.
_COLUMNS = [("Runtime", "code", None), ("Mode", "code", None), ("Precision", "text", None), ("Weights", "path", None),
            ("Batch", "number", None), ("Iters", "number", None), ("Images/s", "number", "img/s"),
            ("p50 ms", "number", None), ("p90 ms", "number", None), ("p99 ms", "number", None),
            ("ms/image", "number", "ms/img"), ("GMAC/s", "number", None), ("Peak RSS MB", "number", None)]
_LEFT_OUT_FIRST = ["Iters", "ms/image", "p90 ms", "Weights", "GMAC/s", "p99 ms", "Peak RSS MB"]
_NOTES = {"Images/s": "images/s = batch / p50 latency",
          "GMAC/s": "GMAC/s from the multiply-add count of `xception summary`",
          "Peak RSS MB": "peak RSS is the process's so far"}


def results_table(result: dict):
    """One row per timed run. A runtime or mode shared by every row is said once, in the title;
    the Weights column appears when two weights files were timed (--compare-weights)."""
    from ..benchmark import precision_label
    from .render import Column, table

    wc = result.get("weights_comparison")
    rows = []
    for r in result["results"]:
        lat = r["latency_ms"]
        rows.append([r.get("runtime", "keras"), r["mode"], precision_label(r), r.get("weights", wc and wc["weights"]),
                     r["batch_size"], r["iterations"], f"{r['images_per_second']:.2f}", f"{lat['p50']:.1f}",
                     f"{lat['p90']:.1f}", f"{lat['p99']:.1f}", f"{r['ms_per_image']:.1f}",
                     f"{r['gmacs_per_second']:.1f}", f"{r['peak_rss_mb']:.0f}"])
    shared = {name: rows[0][i] for i, name in enumerate(("Runtime", "Mode"))
              if rows and len({row[i] for row in rows}) == 1}
    keep = [i for i, (name, _, _) in enumerate(_COLUMNS) if name not in shared and (name != "Weights" or wc)]
    names = [_COLUMNS[i][0] for i in keep]
    title = f"{shared['Mode']} on {shared['Runtime']}" if len(shared) == 2 else None

    def caption(shown: set[str]) -> str:
        return "; ".join(note for name, note in _NOTES.items() if name in shown) + "."

    return table([Column(*_COLUMNS[i]) for i in keep], [[row[i] for i in keep] for row in rows], title=title,
                 caption=caption, drop=[names.index(n) for n in _LEFT_OUT_FIRST if n in names], more="-f json")


def _what_started(result: dict) -> str:
    """What the cold start did: built the network, or took it from the compiled-network cache."""
    if result.get("compiled_network_cache") == "loaded":
        return "import + the compiled network from the cache; --no-cache builds it"
    return "import + build + weights"


def _breakdown(result: dict) -> str:
    parts = result.get("cold_start_breakdown_s")
    if not parts:
        return ""
    names = {"resolve_weights_s": "find weights", "import_s": "import", "read_weights_s": "read weights",
             "build_s": "build", "compile_s": "compile", "other_s": "other"}
    return " (" + ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in parts.items()) + ")"
