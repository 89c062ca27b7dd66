"""Whole-command folder classification: xception predict vs the naive Keras baseline.

usage: python benchmarks/folder.py [--images 64] [--repeat 1] [--rss]

Builds a corpus of 12-megapixel JPEGs with ../shared/bench/make_corpus.py and a calibrated
seeded weights file, then times, in one run, on the same files and weights:
  - xception predict DIR -f jsonl -o FILE --no-progress   (float32 and bfloat16)
  - ../shared/bench/naive_keras.py in batch and loop modes
Wall time is the whole command (interpreter start, imports, weights, classification).
--rss also runs predict on 32 and 256 images and compares peak RSS (memory must stay flat).

Then, in the same run, what bounds the float32 ratio on this machine: the model alone in steady
state (`xception benchmark -b 8`, both cores) and decoding alone (CPU time per photo, one core).
No pipeline can finish N photos faster than N x (model + decode / cores), start-up not even
counted, so naive batch / that is the best ratio any float32 implementation of this model could
reach here with this runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, PY, ROOT, SHARED, XCEPTION, corpus, machine, timed, weights_file  # noqa: E402


def predict_cmd(folder: Path, out: Path, precision: str, weights: Path) -> list[str]:
    return [XCEPTION, "predict", str(folder), "-f", "jsonl", "-o", str(out), "--no-progress",
            "--weights", str(weights), "--precision", precision]


def naive_cmd(folder: Path, mode: str, weights: Path) -> list[str]:
    return [PY, str(SHARED / "bench" / "naive_keras.py"), str(weights),
            str(SHARED / "data" / "imagenet_class_index.json"), str(folder), mode]


def _timed_matmul(a) -> float:
    t0 = time.perf_counter()
    a @ a
    return time.perf_counter() - t0


def bounds(folder: Path, weights: Path, n: int, naive_batch_s: float, ours_s: float) -> dict:
    """Model-only and decode-only costs measured now, and the best float32 ratio they allow."""
    out = subprocess.run([XCEPTION, "benchmark", "-b", "8", "-n", "8", "--warmup", "2",
                          "--weights", str(weights), "-f", "json"],
                         check=True, capture_output=True, text=True).stdout
    model = json.loads(out)["results"][0]
    from xception_cli.preprocess import load_image

    files = sorted(folder.glob("*.jpg"))[:16]
    t0 = time.process_time()
    for f in files:
        load_image(f)
    decode_ms = (time.process_time() - t0) / len(files) * 1000
    cores = os.cpu_count() or 1
    import numpy as np

    a = np.random.default_rng(0).random((2048, 2048), np.float32)
    a @ a
    gemm_s = min(_timed_matmul(a) for _ in range(5))
    floor_s = n * (model["ms_per_image"] + decode_ms / cores) / 1000
    return {
        "model_ms_per_image": model["ms_per_image"], "gmacs_per_second": model["gmacs_per_second"],
        "precision_run": model.get("precision_run"), "sgemm_gmacs": round(2048 ** 3 / gemm_s / 1e9, 1),
        "decode_ms_per_image": round(decode_ms, 1),
        "floor_s": round(floor_s, 2), "best_ratio": round(naive_batch_s / floor_s, 2),
        "model_only_ratio": round(naive_batch_s / (n * model["ms_per_image"] / 1000), 2),
        "share_of_best": round(floor_s / ours_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each command (median reported)")
    ap.add_argument("--rss", action="store_true", help="also compare peak RSS on 32 vs 256 images")
    args = ap.parse_args()

    OUT.mkdir(exist_ok=True)
    weights = weights_file()
    folder = corpus(args.images)
    print(f"machine: {machine()}", flush=True)
    print(f"corpus: {args.images} JPEGs of 4032x3024 in {folder}", flush=True)
    runs = {
        "xception float32": lambda: predict_cmd(folder, OUT / "f32.jsonl", "float32", weights),
        "xception bfloat16": lambda: predict_cmd(folder, OUT / "bf16.jsonl", "bfloat16", weights),
        "naive batch": lambda: naive_cmd(folder, "batch", weights),
        "naive loop": lambda: naive_cmd(folder, "loop", weights),
    }
    results: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, cmd in runs.items():  # interleaved, so drift on a noisy machine hits all alike
            r = timed(cmd())
            results[name].append(r)
            print(f"  {name:<18} {r['wall_s']:7.2f} s  peak RSS {r['peak_rss_mb']:7.1f} MB", flush=True)
    wall = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in results.items()}
    rss = {name: max(r["peak_rss_mb"] for r in rs) for name, rs in results.items()}
    n = args.images
    print(f"\n{'command':<20}{'wall s':>9}{'images/s':>10}{'peak RSS MB':>13}")
    for name in runs:
        print(f"{name:<20}{wall[name]:9.2f}{n / wall[name]:10.2f}{rss[name]:13.1f}")
    ratios = {
        "float32 vs naive batch": wall["naive batch"] / wall["xception float32"],
        "float32 vs naive loop": wall["naive loop"] / wall["xception float32"],
        "bfloat16 vs naive batch": wall["naive batch"] / wall["xception bfloat16"],
        "bfloat16 vs float32": wall["xception float32"] / wall["xception bfloat16"],
    }
    print("\nspeed-up (whole command, same run):")
    for k, v in ratios.items():
        print(f"  {k:<26}{v:6.2f}x")
    f32 = [json.loads(line) for line in (OUT / "f32.jsonl").read_text().splitlines()]
    bf16 = {r["path"]: r for r in map(json.loads, (OUT / "bf16.jsonl").read_text().splitlines())}
    agree = sum(r["predictions"][0]["index"] == bf16[r["path"]]["predictions"][0]["index"] for r in f32)
    print(f"  bfloat16 top-1 agreement with float32: {agree}/{len(f32)}")

    b = bounds(folder, weights, n, wall["naive batch"], wall["xception float32"])
    print("\nwhat bounds float32 here (same run):")
    print(f"  model alone, batch 8, {b['precision_run']}: {b['model_ms_per_image']:.1f} ms/image"
          f" = {b['gmacs_per_second']:.1f} GMAC/s on {os.cpu_count()} cores")
    print(f"  float32 matmul peak here (NumPy sgemm 2048x2048, all cores): {b['sgemm_gmacs']:.1f} GMAC/s;"
          f" the model runs at {b['gmacs_per_second'] / b['sgemm_gmacs']:.0%} of it")
    print(f"  decoding + preprocessing alone: {b['decode_ms_per_image']:.1f} ms of one core per photo")
    print(f"  no pipeline beats {n} x (model + decode / {os.cpu_count()}) = {b['floor_s']:.2f} s"
          f" (start-up not counted); predict took {wall['xception float32']:.2f} s"
          f" ({b['share_of_best']:.0%} of that speed)")
    print(f"  best float32 ratio vs naive batch possible here: {b['best_ratio']:.2f}x"
          f" ({b['model_only_ratio']:.2f}x even if decoding cost nothing)")

    if args.rss:
        print("\npeak RSS vs folder size (xception predict, float32):")
        small, big = corpus(32), corpus(256)
        a = timed(predict_cmd(small, OUT / "rss32.jsonl", "float32", weights))
        b = timed(predict_cmd(big, OUT / "rss256.jsonl", "float32", weights))
        print(f"  32 images : {a['peak_rss_mb']:.1f} MB ({a['wall_s']:.1f} s)")
        print(f"  256 images: {b['peak_rss_mb']:.1f} MB ({b['wall_s']:.1f} s)")
        print(f"  ratio     : {b['peak_rss_mb'] / a['peak_rss_mb']:.3f}")
    print(f"\n(rerun: python {Path(__file__).relative_to(ROOT)} --images {n} --repeat {args.repeat}"
          f"{' --rss' if args.rss else ''})")


if __name__ == "__main__":
    main()
