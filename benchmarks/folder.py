"""Whole-command folder classification: xception predict vs the naive Keras baseline.

usage: python benchmarks/folder.py [--images 64] [--repeat 1] [--rss]

Builds a corpus of 12-megapixel JPEGs with ../shared/bench/make_corpus.py and a calibrated
seeded weights file, then times, in one run, on the same files and weights:
  - xception predict DIR -f jsonl -o FILE --no-progress   (float32 and bfloat16)
  - ../shared/bench/naive_keras.py in batch and loop modes
Wall time is the whole command (interpreter start, imports, weights, classification).
--rss also runs predict on 32 and 256 images and compares peak RSS (memory must stay flat).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, PY, ROOT, SHARED, corpus, machine, timed, weights_file  # noqa: E402

XCEPTION = str(Path(PY).with_name("xception"))


def predict_cmd(folder: Path, out: Path, precision: str, weights: Path) -> list[str]:
    return [XCEPTION, "predict", str(folder), "-f", "jsonl", "-o", str(out), "--no-progress",
            "--weights", str(weights), "--precision", precision]


def naive_cmd(folder: Path, mode: str, weights: Path) -> list[str]:
    return [PY, str(SHARED / "bench" / "naive_keras.py"), str(weights),
            str(SHARED / "data" / "imagenet_class_index.json"), str(folder), mode]


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
