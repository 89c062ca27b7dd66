"""One photo, whole command: `xception predict cat.jpg` vs the naive Keras script on the same photo.

usage: python benchmarks/one_photo.py [--repeat 5] [--runtime auto] [--weights FILE]

Each command is timed from process start to exit (interpreter, imports, weights, the answer),
interleaved --repeat times on examples/cat.jpg with the same weights file (generated in the
official layout unless --weights is given); the naive baseline is benchmarks/naive_keras.py in
loop mode. XCEPTION_CACHE_DIR points at a fresh empty folder for this run, so the first predict
starts with a cold compiled-network cache: it is reported on its own, beside the median of the
warm runs that follow (and the median of all runs). Targets: warm median <= 0.45 s, >= 10x naive.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, ROOT, XCEPTION, cache_env, header, naive_cmd, timed, verdict, weights_file  # noqa: E402

TARGET_S, TARGET_RATIO = 0.45, 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs of each command (at least 2)")
    ap.add_argument("--runtime", default="auto", choices=["auto", "openvino", "tensorflow"])
    ap.add_argument("--weights", help="an official-layout .h5 (default: generated seeded weights, cached)")
    args = ap.parse_args()
    if args.repeat < 2:
        ap.error("--repeat must be at least 2 (the first run is cold, the rest warm)")

    header("one photo, whole command: xception predict vs the naive Keras script")
    weights = weights_file(args.weights)
    folder = OUT / "one-photo"
    folder.mkdir(parents=True, exist_ok=True)
    photo = folder / "cat.jpg"
    shutil.copy(ROOT / "examples" / "cat.jpg", photo)
    env = cache_env()
    print(f"weights: {weights}; compiled-network cache for this run: {env['XCEPTION_CACHE_DIR']} (empty)", flush=True)
    ours = f"xception predict ({args.runtime})"
    runs = {
        ours: [XCEPTION, "predict", str(photo), "-f", "jsonl", "--weights", str(weights), "--runtime", args.runtime],
        "naive_keras.py loop": naive_cmd(photo, "loop", weights),
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.repeat):
        for name, cmd in runs.items():  # interleaved: drift on a noisy machine hits both alike
            r = timed(cmd, env=env)
            walls[name].append(r["wall_s"])
            cold = "  (cold cache)" if i == 0 and name == ours else ""
            print(f"  run {i + 1}: {name:<28} {r['wall_s']:6.2f} s{cold}", flush=True)
    warm = {name: statistics.median(w[1:]) for name, w in walls.items()}
    print(f"\n{'command':<30}{'first s':>9}{'warm median s':>15}{'all median s':>14}{'min s':>8}{'max s':>8}")
    for name, w in walls.items():
        print(f"{name:<30}{w[0]:9.2f}{warm[name]:15.2f}{statistics.median(w):14.2f}{min(w):8.2f}{max(w):8.2f}")
    ratio = warm["naive_keras.py loop"] / warm[ours]
    first_ratio = walls["naive_keras.py loop"][0] / walls[ours][0]
    print(f"\nxception predict, warm median: {warm[ours]:.2f} s (target <= {TARGET_S} s: "
          f"{verdict(warm[ours] <= TARGET_S)}); first run, cold cache: {walls[ours][0]:.2f} s")
    print(f"speed-up vs naive (same run, warm medians): {ratio:.2f}x (target >= {TARGET_RATIO:.0f}x: "
          f"{verdict(ratio >= TARGET_RATIO)}); first runs: {first_ratio:.2f}x")
    print(f"(rerun: python {Path(__file__).relative_to(ROOT)} --repeat {args.repeat} --runtime {args.runtime})")


if __name__ == "__main__":
    main()
