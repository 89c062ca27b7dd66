"""INT8 vs float32 on OpenVINO: a 64-photo folder of 12-MP JPEGs, whole command, same run.

usage: python benchmarks/int8.py [--n 64] [--repeat 3]

Exports the calibrated seeded weights (bench-out/weights.h5) as a float32 IR and as an INT8 IR
calibrated on a separate 32-photo corpus (seed 1) (`xception export openvino --int8 --calibrate`), then
times, interleaved, `xception predict DIR -f jsonl -o FILE --no-progress` with --weights the .h5
(the default OpenVINO path), the float32 IR and the INT8 IR. Agreement of INT8 with float32 is
printed beside the speed: top-1 over the folder, and max |dp| over all 1000 probabilities from
`xception benchmark --compare-weights` on the same photos. The corpora (photo-like 12-MP JPEGs) are
made by benchmarks/make_corpus.py. folder.py measures INT8 against its floor and the naive script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, ROOT, XCEPTION, corpus, header, timed, weights_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", "--images", dest="images", type=int, default=64, help="photos in the corpus")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    header("INT8 IR vs float32 on OpenVINO, whole command")
    OUT.mkdir(exist_ok=True)
    weights = weights_file()
    folder, calibration = corpus(args.images), corpus(32, seed=1)
    f32_ir, int8_ir = OUT / "xception-f32.xml", OUT / "xception-int8.xml"
    r = timed([XCEPTION, "export", "openvino", "-o", str(f32_ir), "--weights", str(weights)])
    print(f"export float32 IR: {r['wall_s']:.1f} s", flush=True)
    r = timed([XCEPTION, "export", "openvino", "--int8", "--calibrate", str(calibration), "-o", str(int8_ir),
               "--weights", str(weights), "-f", "json"], stdout=subprocess.PIPE)
    print(f"export INT8 IR (calibrated on {calibration.name}): {r['wall_s']:.1f} s", flush=True)
    from xception_cli.weights import read_metadata

    check = read_metadata(int8_ir)["int8"]
    print(f"  held-out check at export: top-1 {check['top1_agree_count']}/{check['held_out_photos']}, "
          f"max |dp| {check['max_abs_probability_difference']:.3g}", flush=True)

    runs = {"float32 (.h5, OpenVINO)": weights, "float32 IR": f32_ir, "INT8 IR": int8_ir}
    outs = {name: OUT / f"int8-bench-{i}.jsonl" for i, name in enumerate(runs)}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, w in runs.items():
            r = timed([XCEPTION, "predict", str(folder), "-f", "jsonl", "-o", str(outs[name]), "--no-progress",
                       "--weights", str(w)])
            walls[name].append(r["wall_s"])
            print(f"  {name:<26} {r['wall_s']:6.2f} s", flush=True)
    med = {name: statistics.median(w) for name, w in walls.items()}
    n = args.images
    print(f"\n{'command (xception predict DIR)':<32}{'wall s':>8}{'images/s':>10}")
    for name in runs:
        print(f"{name:<32}{med[name]:8.2f}{n / med[name]:10.2f}")

    def top1(path):
        return {r["path"]: r["predictions"][0]["index"] for r in map(json.loads, path.read_text().splitlines())}

    a, b = top1(outs["float32 (.h5, OpenVINO)"]), top1(outs["INT8 IR"])
    agree = sum(a[p] == b[p] for p in a)
    cmp = subprocess.run([XCEPTION, "benchmark", "-b", "8", "-n", "3", "--weights", str(f32_ir), "--compare-weights",
                          str(int8_ir), "--images", str(folder), "-f", "json"], capture_output=True, text=True,
                         check=True)
    wc = json.loads(cmp.stdout)["weights_comparison"]
    print("\nINT8 vs float32 (same run):")
    print(f"  whole command: {med['float32 (.h5, OpenVINO)'] / med['INT8 IR']:.2f}x vs the .h5 path, "
          f"{med['float32 IR'] / med['INT8 IR']:.2f}x vs the float32 IR")
    print(f"  model only, batch 8 (benchmark --compare-weights): {wc['speedup_compare_vs_weights']['8']:.2f}x")
    print(f"  top-1 agreement on the folder: {agree}/{len(a)}; on {wc['agreement_inputs']}: "
          f"{wc['top1_agreement']:.0%}, max |dp| {wc['max_abs_probability_difference']:.3g}")
    print(f"\n(rerun: python {Path(__file__).relative_to(ROOT)} --n {n} --repeat {args.repeat})")


if __name__ == "__main__":
    main()
