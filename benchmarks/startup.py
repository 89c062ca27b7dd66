"""Where a run's fixed cost goes: the parts of `xception predict`'s start-up, each measured apart.

usage: python benchmarks/startup.py [--precision float32|bfloat16] [--weights FILE] [--repeat 5]

Each part in fresh processes, --repeat times (medians), with the compiled network already in the
run's own cache (one untimed predict fills it first), as in a user's second run:
  - to the first photo: from starting `xception predict DIR` to the moment it opens its first
    photo (an audit hook in the child; wall time from the parent's clock): Python, NumPy, Pillow,
    the CLI, the output layer, finding the weights. One core works, the other waits for photos.
  - reading the compiled network: `Engine(...).network` with the cache warm (wall, CPU-s).
  - the first inference at batch 8, against the next two: wall, CPU-s and page faults (getrusage);
    the first touches OpenVINO's working memory.
  - `import numpy`: the process's CPU-s 0.3 s after it, with OpenBLAS's default spin of its idle
    threads and with OPENBLAS_THREAD_TIMEOUT=4 (what the `xception` command sets before NumPy
    loads; the network parts above are measured with it too).
`benchmarks/folder.py --large 256` measures the whole fixed cost from two folder sizes; this says
what it is made of. An INT8 IR goes in --weights (its precision is its own).
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
import _common as c  # noqa: E402
from _common import OUT, PY, XCEPTION, corpus, timed  # noqa: E402

FIRST_PHOTO = """
import os, sys, time
seen = []
def hook(event, args):
    if not seen and event == "open" and isinstance(args[0], str) and args[0].endswith(".jpg"):
        seen.append(args[0])
        os.write(2, f"FIRST_PHOTO {time.time():.6f}\\n".encode())
sys.addaudithook(hook)
sys.argv = ["xception", *sys.argv[1:]]
from xception_cli.cli import main
main()
"""

NETWORK = """
import json, resource, sys, time
import numpy as np
from xception_cli.engine import Engine

def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime + r.ru_stime, r.ru_minflt

def since(a):
    b = usage()
    return {"wall_s": b[0] - a[0], "cpu_s": b[1] - a[1], "page_faults": b[2] - a[2]}

weights, precision = sys.argv[1], sys.argv[2]
engine = Engine(weights=weights, precision=precision)
a = usage()
network = engine.network
out = {"network": since(a), "cache": network.cache, "precision_run": network.precision, "calls": []}
pixels = np.random.default_rng(0).integers(0, 256, (8, 299, 299, 3), dtype=np.uint8)
for _ in range(3):
    a = usage()
    engine.infer_pixels(pixels)
    out["calls"].append(since(a))
print(json.dumps(out))
"""

NUMPY = """
import resource, time, numpy
time.sleep(0.3)  # OpenBLAS's idle threads spin on after the import returns (about 0.1 s from its load)
r = resource.getrusage(resource.RUSAGE_SELF)
print(r.ru_utime + r.ru_stime)
"""


def first_photo(folder: Path, args: list[str], env: dict) -> float:
    t0 = time.time()
    p = subprocess.run([PY, "-c", FIRST_PHOTO, "predict", str(folder), "-f", "jsonl", "-o", str(OUT / "startup.jsonl"),
                        "--no-progress", *args], capture_output=True, text=True, env={**os.environ, **env})
    if p.returncode != 0:
        raise SystemExit(f"predict failed: {p.stderr[-2000:]}")
    stamp = next(line for line in p.stderr.splitlines() if line.startswith("FIRST_PHOTO "))
    return float(stamp.split()[1]) - t0


def network_parts(weights: str, precision: str, env: dict) -> dict:
    # as in the command, whose CLI sets it before NumPy loads (xception_cli/cli/blas.py)
    blas = {"OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT", "4")}
    p = subprocess.run([PY, "-c", NETWORK, weights, precision], capture_output=True, text=True,
                       env={**os.environ, **blas, **env})
    if p.returncode != 0:
        raise SystemExit(f"loading the network failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout)


def numpy_cpu(extra: dict) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"} | extra
    return float(subprocess.run([PY, "-c", NUMPY], capture_output=True, text=True, env=env, check=True).stdout)


def med(values) -> float:
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--weights", help="an official-layout .h5 or an exported IR (default: generated seeded weights)")
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes per part (medians)")
    args = ap.parse_args()

    c.header(f"what predict's start-up is made of ({args.precision}, compiled network cached)")
    weights = str(c.weights_file(args.weights))
    is_ir = weights.endswith(".xml")
    pick = ["--weights", weights] + ([] if is_ir else ["--precision", args.precision])
    folder = corpus(8)
    env = c.cache_env()
    r = timed([XCEPTION, "predict", str(sorted(folder.glob("*.jpg"))[0]), "-f", "jsonl", *pick], env=env)
    print(f"cache filled (predict on one photo, compiling: {r['wall_s']:.2f} s; not counted)", flush=True)

    firsts, nets, calls = [], [], [[], [], []]
    blas = {"default spin": [], "OPENBLAS_THREAD_TIMEOUT=4": []}
    for i in range(args.repeat):
        firsts.append(first_photo(folder, pick, env))
        part = network_parts(weights, "float32" if is_ir else args.precision, env)
        if part["cache"] != "loaded":
            raise SystemExit(f"the compiled network did not come from the cache ({part['cache']})")
        nets.append(part["network"])
        for k, call in enumerate(part["calls"]):
            calls[k].append(call)
        blas["default spin"].append(numpy_cpu({}))
        blas["OPENBLAS_THREAD_TIMEOUT=4"].append(numpy_cpu({"OPENBLAS_THREAD_TIMEOUT": "4"}))
        print(f"  round {i + 1}: first photo opened at {firsts[-1]:.3f} s; network read "
              f"{nets[-1]['wall_s']:.3f} s; inferences " + ", ".join(f"{x['wall_s']:.3f}" for x in part["calls"])
              + " s", flush=True)

    print(f"\nmedians of {args.repeat} fresh processes ({part['precision_run']} ran):")
    print(f"  {'start to the first photo opened:':<42}{med(firsts):.3f} s wall (one core; decoding starts here)")
    print(f"  {'reading the compiled network:':<42}{med(n['wall_s'] for n in nets):.3f} s wall, "
          f"{med(n['cpu_s'] for n in nets):.3f} CPU-s")
    for k, name in enumerate(["first inference, batch 8", "second", "third"]):
        xs = calls[k]
        print(f"  {name + ':':<42}{med(x['wall_s'] for x in xs):.3f} s wall, {med(x['cpu_s'] for x in xs):.3f} CPU-s, "
              f"{med(x['page_faults'] for x in xs):.0f} page faults")
    extra_wall = med(x["wall_s"] for x in calls[0]) - med(x["wall_s"] for x in calls[1] + calls[2])
    extra_cpu = med(x["cpu_s"] for x in calls[0]) - med(x["cpu_s"] for x in calls[1] + calls[2])
    print(f"  {'the first inference' + chr(39) + 's extra:':<42}{extra_wall:.3f} s wall, {extra_cpu:.3f} CPU-s")
    for name, xs in blas.items():
        print(f"  {'import numpy, ' + name + ':':<42}{med(xs):.3f} CPU-s (0.3 s after)")
    print(f"\n(rerun: python {Path(__file__).relative_to(c.ROOT)} --precision {args.precision} --repeat {args.repeat}"
          f"{' --weights ' + args.weights if args.weights else ''})")


if __name__ == "__main__":
    main()
