"""Tables for ``xception benchmark`` (Rich)."""

from __future__ import annotations

from .render import table


def render(result: dict, console) -> None:
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
        f"cold start (import + build + weights): {result['cold_start_s']:.2f} s{_breakdown(result)}; "
        f"first call: {result['first_call_s']:.2f} s",
        highlight=False,
    )
    rows = []
    for r in result["results"]:
        lat = r["latency_ms"]
        ran = r.get("precision_run", r["precision"])
        prec = ran if ran == r["precision"] else f"{r['precision']} (ran {ran})"
        if "weights" in r:
            prec += f" ({r['weights']})"
        rows.append([r.get("runtime", "keras"), r["mode"], prec, r["batch_size"], r["iterations"],
                     f"{r['images_per_second']:.2f}",
                     f"{lat['p50']:.1f}", f"{lat['p90']:.1f}", f"{lat['p99']:.1f}", f"{r['ms_per_image']:.1f}",
                     f"{r['gmacs_per_second']:.1f}", f"{r['peak_rss_mb']:.0f}"])
    console.print(table(
        ["Runtime", "Mode", "Precision", ("Batch", "right"), ("Iters", "right"), ("Images/s", "right"),
         ("p50 ms", "right"), ("p90 ms", "right"), ("p99 ms", "right"), ("ms/image", "right"), ("GMAC/s", "right"),
         ("Peak RSS MB", "right")],
        rows, caption="images/s = batch / p50 latency; GMAC/s from the multiply-add count of `xception summary`; "
        "peak RSS is the process's so far.",
    ))
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
            f"{wc['compare_weights']} ({wc['precision_run']['compare_weights']}) vs {wc['weights']} "
            f"({wc['precision_run']['weights']}): speed-up " + ", ".join(parts)
            + f"; top-1 agreement {wc['top1_agreement']:.0%} on {wc['agreement_inputs']}, "
            f"max |Δp| {wc['max_abs_probability_difference']:.3g}", highlight=False)
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


def _breakdown(result: dict) -> str:
    parts = result.get("cold_start_breakdown_s")
    if not parts:
        return ""
    names = {"resolve_weights_s": "find weights", "import_s": "import", "read_weights_s": "read weights",
             "build_s": "build", "compile_s": "compile", "other_s": "other"}
    return " (" + ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in parts.items()) + ")"
