"""The project's model call on each runtime vs keras.applications.Xception(...).predict, in one process.

usage: python benchmarks/model_call.py [--iterations 15] [--rounds 3]

All load the same calibrated weights file; inputs are the same random batch. Calls are
interleaved in rounds so that the machine's noise hits all alike; the median latency of each
is reported, and the ratios: OpenVINO (the default runtime) vs the folded TensorFlow path vs
Keras' predict, at batch 1 and 8, and bfloat16 vs float32 on each runtime at batch 8.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, machine, weights_file  # noqa: E402


def median_ms(fn, x, iterations: int) -> float:
    lat = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn(x)
        lat.append((time.perf_counter() - t0) * 1000)
    return statistics.median(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--weights", help="an official-layout .h5 (default: generated seeded weights, cached)")
    args = ap.parse_args()

    header("model call per runtime vs keras.applications.Xception(...).predict, one process")
    weights = weights_file(args.weights)
    from xception_cli.engine import get_engine
    from xception_cli.runtimes.tensorflow import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    ov = get_engine(weights=str(weights), runtime="openvino")
    tf = get_engine(weights=str(weights), runtime="tensorflow")
    reference = keras.applications.Xception(weights=str(weights))
    rng = np.random.default_rng(0)
    batches = {bs: rng.uniform(-1, 1, (bs, 299, 299, 3)).astype(np.float32) for bs in (1, 8)}
    calls = {
        "keras predict": lambda x: reference.predict(x, verbose=0),
        "tensorflow (folded)": tf,
        "openvino": ov,
        "tensorflow bf16": get_engine(weights=str(weights), precision="bfloat16", runtime="tensorflow"),
        "openvino bf16": get_engine(weights=str(weights), precision="bfloat16", runtime="openvino"),
    }
    for bs, x in batches.items():  # warm-up: tracing, primitive creation
        for fn in calls.values():
            fn(x)
            fn(x)
        expected = reference.predict(x, verbose=0)
        for name in ("tensorflow (folded)", "openvino"):
            print(f"batch {bs}: max |{name} - keras| = {np.abs(calls[name](x) - expected).max():.2e}")
    ran = calls["openvino bf16"].network.precision
    print(f"openvino bf16 runs in {ran} on this CPU" + (f" ({calls['openvino bf16'].network.notes[0]})"
                                                        if calls["openvino bf16"].network.notes else ""))
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for bs, x in batches.items():
            for name, fn in calls.items():
                if name.endswith("bf16") and bs != 8:
                    continue
                times.setdefault((name, bs), []).append(median_ms(fn, x, args.iterations))
    print(f"\nmachine: {machine()}")
    print(f"{'call':<22}{'batch':>6}{'median ms':>12}{'ms/image':>10}{'images/s':>10}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for (name, bs), ms in med.items():
        print(f"{name:<22}{bs:>6}{ms:12.1f}{ms / bs:10.1f}{1000 * bs / ms:10.2f}")
    print("\nratios (same run, float32 unless said):")
    for bs in (1, 8):
        print(f"  openvino vs tensorflow (folded), batch {bs}: "
              f"{med['tensorflow (folded)', bs] / med['openvino', bs]:.2f}x")
        print(f"  openvino vs keras predict, batch {bs}: {med['keras predict', bs] / med['openvino', bs]:.2f}x")
        print(f"  tensorflow (folded) vs keras predict, batch {bs}: "
              f"{med['keras predict', bs] / med['tensorflow (folded)', bs]:.2f}x")
    for rt in ("openvino", "tensorflow"):
        name = rt if rt == "openvino" else "tensorflow (folded)"
        print(f"  bfloat16 vs float32 on {rt}, batch 8: {med[name, 8] / med[f'{rt} bf16', 8]:.2f}x")
    print(f"\n(rerun: python benchmarks/model_call.py --iterations {args.iterations} --rounds {args.rounds})")


if __name__ == "__main__":
    main()
