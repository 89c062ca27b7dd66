"""`predict --ray` against the local path on the same folder of 12-MP photos, whole command, same run.

usage: python benchmarks/ray_path.py [--n 64] [--repeat 2]

Times, interleaved: the local pipeline (`xception predict DIR -o FILE`), the Ray Data path with a
local file output (`--ray -o FILE`) and with shard output (`--ray -o DIR/`), each starting its own
local Ray (as a user's first run does). Reports the overhead honestly and the per-actor
throughput that a cluster estimate builds on. Corpus (photo-like 12-MP JPEGs) from
benchmarks/make_corpus.py.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, ROOT, XCEPTION, corpus, header, timed, weights_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", "--images", dest="images", type=int, default=64, help="photos in the corpus")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    header("predict --ray vs the local path, whole command")
    OUT.mkdir(exist_ok=True)
    weights, folder = weights_file(), corpus(args.images)
    shards = OUT / "ray-shards"
    common = ["--no-progress", "--weights", str(weights)]
    runs = {
        "local, -o FILE": [XCEPTION, "predict", str(folder), "-o", str(OUT / "local.jsonl"), *common],
        "--ray, -o FILE": [XCEPTION, "predict", str(folder), "--ray", "-o", str(OUT / "ray.jsonl"), *common],
        "--ray, -o DIR/ (shards)": [XCEPTION, "predict", str(folder), "--ray", "-o", f"{shards}/", *common],
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    rates: list[float] = []
    for _ in range(args.repeat):
        for name, cmd in runs.items():
            shutil.rmtree(shards, ignore_errors=True)
            r = timed(cmd)
            walls[name].append(r["wall_s"])
            m = re.search(r"classifying at ([0-9.]+) images/s", r["stderr"])
            if "--ray" in cmd and m:
                rates.append(float(m.group(1)))
            print(f"  {name:<26} {r['wall_s']:6.2f} s", flush=True)
    med = {name: statistics.median(w) for name, w in walls.items()}
    n = args.images
    print(f"\n{'command (xception predict DIR)':<32}{'wall s':>8}{'images/s':>10}{'vs local':>10}")
    for name in runs:
        print(f"{name:<32}{med[name]:8.2f}{n / med[name]:10.2f}{med['local, -o FILE'] / med[name]:9.2f}x")
    if rates:
        r = statistics.median(rates)
        print(f"\nRay, one actor on this machine, while classifying: {r:.2f} images/s (median of the runs' "
              f"closing lines); overhead vs local: {med['--ray, -o FILE'] - med['local, -o FILE']:+.1f} s")
    print(f"\n(rerun: python {Path(__file__).relative_to(ROOT)} --n {n} --repeat {args.repeat})")


if __name__ == "__main__":
    main()
