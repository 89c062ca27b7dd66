#!/usr/bin/env bash
# Xception vs Inception-v3 on this machine: inference and one SGD training step, batch 8.
# The seed notes claim Xception has far less compute than Inception-v3 yet trains slower;
# `xception summary --compare inception-v3` settles the compute, this settles the speed.
# usage: bash benchmarks/seed_claim.sh [ITERATIONS]   (writes bench-out/seed-*.json, prints a table)
# The environment is $VENV (default .venv), as in the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
venv=${VENV:-.venv}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, whichever venv runs it
mkdir -p bench-out
bin=$venv/bin/xception
"$venv/bin/python" -c 'import sys; sys.path.insert(0, "benchmarks"); from _common import header; header("Xception vs Inception-v3, inference and one SGD step, batch 8")'
for model in xception inception-v3; do
  for mode in inference train; do
    # --runtime tensorflow: both models on the same runtime (Inception-v3 runs on Keras)
    $bin benchmark --model "$model" --mode "$mode" --runtime tensorflow -b 8 -n "$n" --warmup 1 -f json \
      -o "bench-out/seed-$model-$mode.json"
  done
done
"$venv/bin/python" - <<'PY'
import json
rows = {}
for model in ("xception", "inception-v3"):
    for mode in ("inference", "train"):
        d = json.load(open(f"bench-out/seed-{model}-{mode}.json"))
        r = d["results"][0]
        rows[model, mode] = (d["model"]["params"], d["model"]["macs_per_image"], r["images_per_second"], r["latency_ms"]["p50"])
print(f"{d['system']['cpu']}, {d['system']['cores']} cores, TensorFlow {d['system']['tensorflow']}")
print(f"{'model':<14}{'mode':<11}{'params':>12}{'GMACs':>8}{'img/s':>8}{'p50 ms':>9}")
for (model, mode), (p, m, ips, p50) in rows.items():
    print(f"{model:<14}{mode:<11}{p:>12,}{m/1e9:>8.2f}{ips:>8.2f}{p50:>9.0f}")
for mode in ("inference", "train"):
    x, i = rows["xception", mode][2], rows["inception-v3", mode][2]
    print(f"{mode}: Inception-v3 is {i / x:.2f}x as fast as Xception")
PY
