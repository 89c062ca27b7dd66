"""One photo, whole command: `xception predict cat.jpg` vs the naive Keras script on a one-photo folder.

usage: python benchmarks/one_photo.py [--repeat 5] [--runtime auto]

Each command is timed from process start to exit (interpreter, imports, weights, the answer),
interleaved `--repeat` times on the same file and the same weights file, median reported. The
naive baseline is ../shared/bench/naive_keras.py (this benchmark reads ../shared; the tests never do).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, PY, ROOT, SHARED, XCEPTION, machine, timed, weights_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--runtime", default="auto", choices=["auto", "openvino", "tensorflow"])
    args = ap.parse_args()

    OUT.mkdir(exist_ok=True)
    weights = weights_file()
    folder = OUT / "one-photo"
    folder.mkdir(exist_ok=True)
    photo = folder / "cat.jpg"
    shutil.copy(ROOT / "examples" / "cat.jpg", photo)
    print(f"machine: {machine()}", flush=True)
    runs = {
        f"xception predict ({args.runtime})": [XCEPTION, "predict", str(photo), "-f", "jsonl", "--weights",
                                               str(weights), "--runtime", args.runtime],
        "naive_keras.py loop": [PY, str(SHARED / "bench" / "naive_keras.py"), str(weights),
                                str(SHARED / "data" / "imagenet_class_index.json"), str(folder), "loop"],
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, cmd in runs.items():  # interleaved: drift on a noisy machine hits both alike
            r = timed(cmd)
            walls[name].append(r["wall_s"])
            print(f"  {name:<28} {r['wall_s']:6.2f} s", flush=True)
    med = {name: statistics.median(w) for name, w in walls.items()}
    ours, naive = med[next(iter(runs))], med["naive_keras.py loop"]
    print(f"\n{'command':<30}{'median s':>9}{'min s':>8}{'max s':>8}")
    for name, w in walls.items():
        print(f"{name:<30}{med[name]:9.2f}{min(w):8.2f}{max(w):8.2f}")
    print(f"\nspeed-up (same run): {naive / ours:.2f}x; ours {ours:.2f} s median")
    print(f"(rerun: python {Path(__file__).relative_to(ROOT)} --repeat {args.repeat} --runtime {args.runtime})")


if __name__ == "__main__":
    main()
