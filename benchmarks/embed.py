"""`xception embed` next to `xception predict` on the same folder of 12-MP photos, whole command, same run.

usage: python benchmarks/embed.py [--n 64] [--repeat 3]

Both on the default runtime (OpenVINO) with the calibrated seeded weights file, interleaved
`--repeat` times, median wall time (interpreter start to exit). embed writes npz (whole, at the
end) and jsonl (as it goes); predict writes jsonl. The corpus (photo-like
12-MP JPEGs) is made by benchmarks/make_corpus.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, ROOT, XCEPTION, corpus, header, timed, weights_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", "--images", dest="images", type=int, default=64, help="photos in the corpus")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    header("xception embed next to xception predict, whole command")
    OUT.mkdir(exist_ok=True)
    weights, folder = weights_file(), corpus(args.images)
    common = ["--no-progress", "--weights", str(weights)]
    runs = {
        "predict -> jsonl": [XCEPTION, "predict", str(folder), "-o", str(OUT / "bench-predict.jsonl"), *common],
        "embed -> npz": [XCEPTION, "embed", str(folder), "-o", str(OUT / "bench-embed.npz"), *common],
        "embed -> jsonl": [XCEPTION, "embed", str(folder), "-o", str(OUT / "bench-embed.jsonl"), *common],
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, cmd in runs.items():
            r = timed(cmd)
            walls[name].append(r["wall_s"])
            print(f"  {name:<18} {r['wall_s']:6.2f} s", flush=True)
    med = {name: statistics.median(w) for name, w in walls.items()}
    n = args.images
    print(f"\n{'command':<20}{'wall s':>8}{'images/s':>10}{'vs predict':>12}")
    for name in runs:
        print(f"{name:<20}{med[name]:8.2f}{n / med[name]:10.2f}{med['predict -> jsonl'] / med[name]:11.2f}x")
    print(f"\n(rerun: python {Path(__file__).relative_to(ROOT)} --n {n} --repeat {args.repeat})")


if __name__ == "__main__":
    main()
