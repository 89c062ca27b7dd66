"""OpenVINO runtime options vs the folded TensorFlow call, model only, in one run.

usage: python benchmarks/runtime_options.py [--iterations 8] [--images 32]

Measures, on random input (speed does not depend on the values; the calibrated weights file of
the other benchmarks is used so activations stay in a realistic range):
  (a) start-up in a fresh process: ``import openvino`` -> weights read -> ``build_model`` ->
      ``compile_model`` -> first inference; no TensorFlow is loaded there;
  (b) float32 with the LATENCY hint, batch 1 and 8, one request (also bfloat16, with the
      precision the plugin actually chose read back);
  (c) float32 with the THROUGHPUT hint and NUM_STREAMS 2: an ``openvino.AsyncInferQueue`` of 2
      jobs fed batches of 4 or 8, and the module's ``make_async_infer``;
  (d) compile time in a fresh process without CACHE_DIR, with a cold and with a warm cache;
  and ``fused.folded_inference`` (TensorFlow, float32) at batch 1 and 8, last, in this process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, PY, header, machine, weights_file  # noqa: E402

SIZE = 299


def startup(weights: str, cache_dir: str | None) -> dict:
    """Run in a fresh process (``--startup``): seconds of each step up to the first result."""
    t0 = time.perf_counter()
    import openvino

    t_import = time.perf_counter()
    from xception_cli.model import weight_layout
    from xception_cli.runtimes.openvino import actual_precision, build_model, compile_model, make_infer
    from xception_cli.weights import read_for_layout

    w = read_for_layout(weights, weight_layout(True))
    t_read = time.perf_counter()
    model = build_model(w)
    t_build = time.perf_counter()
    compiled = compile_model(model, cache_dir=cache_dir)
    t_compile = time.perf_counter()
    make_infer(compiled)(np.zeros((1, SIZE, SIZE, 3), np.float32))
    t_first = time.perf_counter()
    return {
        "openvino": openvino.__version__.split("-")[0],
        "import_s": t_import - t0,
        "read_weights_s": t_read - t_import,
        "build_s": t_build - t_read,
        "compile_s": t_compile - t_build,
        "first_infer_s": t_first - t_compile,
        "ready_s": t_compile - t0,  # import + read + build + compile
        "precision": actual_precision(compiled),
        "tensorflow_loaded": "tensorflow" in sys.modules or "keras" in sys.modules,
    }


def run_startup(weights: Path, cache_dir: str | None) -> dict:
    cmd = [PY, __file__, "--startup", str(weights)] + (["--cache-dir", cache_dir] if cache_dir else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def sync_rate(fn, x, iterations: int) -> tuple[float, float]:
    """(median ms per call, images/s) of ``fn(x)`` after two warm-up calls."""
    fn(x)
    fn(x)
    lat = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn(x)
        lat.append(time.perf_counter() - t0)
    ms = statistics.median(lat) * 1000
    return ms, x.shape[0] / (ms / 1000)


def queue_rate(compiled, x, images: int, jobs: int) -> tuple[float, float]:
    """``images`` images in batches of ``len(x)`` through an AsyncInferQueue: (ms per batch, images/s).

    No Python callback: results are not needed here, and callbacks run in OpenVINO's threads.
    """
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled, jobs)
    for _ in range(jobs):  # warm-up: every request once
        queue.start_async({0: x})
    queue.wait_all()
    batches = max(1, images // x.shape[0])
    t0 = time.perf_counter()
    for _ in range(batches):
        queue.start_async({0: x})
    queue.wait_all()
    wall = time.perf_counter() - t0
    del queue
    return wall / batches * 1000, batches * x.shape[0] / wall


def helper_rate(compiled, x, images: int, jobs: int) -> tuple[float, float]:
    """Same through ``runtimes.openvino.make_async_infer`` (outputs copied back, in order)."""
    from xception_cli.runtimes.openvino import make_async_infer

    run = make_async_infer(compiled, jobs)
    list(run([x] * jobs))
    batches = max(1, images // x.shape[0])
    t0 = time.perf_counter()
    n = sum(1 for _ in run(x for _ in range(batches)))
    wall = time.perf_counter() - t0
    assert n == batches
    return wall / batches * 1000, batches * x.shape[0] / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=8, help="timed calls per synchronous measurement")
    ap.add_argument("--images", type=int, default=32, help="images per asynchronous measurement")
    ap.add_argument("--startup", metavar="WEIGHTS", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.startup:
        print(json.dumps(startup(args.startup, args.cache_dir)))
        return

    header("OpenVINO runtime options vs the folded TensorFlow call, model only")
    t_start = time.perf_counter()
    weights = weights_file()
    rows: list[tuple[str, int, float, float, str]] = []  # (what, batch, ms per batch, images/s, note)

    # (a) and (d): fresh processes.
    plain = run_startup(weights, None)
    with tempfile.TemporaryDirectory(prefix="ov-cache-", dir=OUT) as cache:
        cold = run_startup(weights, cache)
        warm = run_startup(weights, cache)
        cache_mb = sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file()) / 1e6

    # (b), (c): this process.
    import openvino as ov

    from xception_cli.model import weight_layout
    from xception_cli.runtimes.openvino import actual_precision, build_model, compile_model, core, make_infer
    from xception_cli.weights import read_for_layout

    w = read_for_layout(weights, weight_layout(True))
    model = build_model(w)
    rng = np.random.default_rng(0)
    x = {bs: rng.uniform(-1, 1, (bs, SIZE, SIZE, 3)).astype(np.float32) for bs in (1, 4, 8)}
    default_precision = core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    cpu_name = core().get_property("CPU", "FULL_DEVICE_NAME")

    latency = compile_model(model, hint="LATENCY")
    infer = make_infer(latency)
    for bs in (1, 8):
        ms, rate = sync_rate(infer, x[bs], args.iterations)
        rows.append(("OpenVINO f32 LATENCY, 1 request", bs, ms, rate, ""))
    bf16 = compile_model(model, precision="bfloat16", hint="LATENCY")
    infer_bf16 = make_infer(bf16)
    diff = float(np.abs(infer_bf16(x[8]) - infer(x[8])).max())
    for bs in (1, 8):
        ms, rate = sync_rate(infer_bf16, x[bs], args.iterations)
        rows.append((f"OpenVINO bf16 LATENCY (runs {actual_precision(bf16)})", bs, ms, rate,
                     f"max|dp| vs f32 {diff:.1e}" if bs == 8 else ""))
    del infer_bf16, bf16

    throughput = compile_model(model, hint="THROUGHPUT", streams=2)
    tp_note = (f"streams {throughput.get_property('NUM_STREAMS')}, "
               f"threads {throughput.get_property('INFERENCE_NUM_THREADS')}")
    for bs in (4, 8):
        ms, rate = queue_rate(throughput, x[bs], args.images, jobs=2)
        rows.append(("OpenVINO f32 THROUGHPUT, AsyncInferQueue(2)", bs, ms, rate, tp_note))
    ms, rate = helper_rate(throughput, x[8], args.images, jobs=2)
    rows.append(("OpenVINO f32 THROUGHPUT, make_async_infer(2)", 8, ms, rate, tp_note))
    ms, rate = sync_rate(make_infer(throughput), x[8], max(2, args.iterations // 2))
    rows.append(("OpenVINO f32 THROUGHPUT, 1 sync request", 8, ms, rate, "one stream idle"))
    del throughput, latency, infer

    # TensorFlow last, so that its import and threads do not disturb the OpenVINO figures.
    from xception_cli.runtimes.tensorflow import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    from xception_cli.fused import folded_inference

    folded = folded_inference(w, True, None, SIZE)
    for bs in (1, 8):
        ms, rate = sync_rate(folded, x[bs], args.iterations)
        rows.append((f"TensorFlow {tf.__version__} folded f32 (fused.py)", bs, ms, rate, ""))

    print(f"\nOpenVINO {ov.__version__.split('-')[0]} CPU device: {cpu_name}; "
          f"plugin's default INFERENCE_PRECISION_HINT: {default_precision}")
    print(f"\n{'call':<50}{'batch':>6}{'ms/batch':>10}{'images/s':>10}  note")
    for what, bs, ms, rate, note in rows:
        print(f"{what:<50}{bs:>6}{ms:10.1f}{rate:10.2f}  {note}")
    print("\nstart-up in a fresh process, seconds (import openvino -> compiled; no TensorFlow loaded: "
          f"{not plain['tensorflow_loaded']}):")
    print(f"{'':<22}{'import':>8}{'read h5':>9}{'build':>8}{'compile':>9}{'ready':>8}{'1st infer':>10}")
    for name, r in (("no CACHE_DIR", plain), ("CACHE_DIR, cold", cold), ("CACHE_DIR, warm", warm)):
        print(f"{name:<22}{r['import_s']:8.2f}{r['read_weights_s']:9.2f}{r['build_s']:8.2f}"
              f"{r['compile_s']:9.2f}{r['ready_s']:8.2f}{r['first_infer_s']:10.2f}")
    print(f"(cache: {cache_mb:.0f} MB on disk; 'ready' = import + read + build + compile)")
    (OUT / "runtime_options.json").write_text(json.dumps({
        "machine": machine(), "openvino_cpu": cpu_name, "default_precision": str(default_precision),
        "rows": [dict(zip(("call", "batch", "ms_per_batch", "images_per_s", "note"), r)) for r in rows],
        "startup": {"none": plain, "cold": cold, "warm": warm}, "cache_mb": cache_mb,
    }, indent=2))
    print(f"\n(total {time.perf_counter() - t_start:.0f} s; rerun: python benchmarks/runtime_options.py "
          f"--iterations {args.iterations} --images {args.images}; JSON in bench-out/runtime_options.json)")


if __name__ == "__main__":
    main()
