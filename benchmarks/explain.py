"""explain against predict on the same folder (same run), and Keras' Grad-CAM recipe on the same photos.

usage: python benchmarks/explain.py [--n 32] [--photo-size 4000x3000] [--repeat 3] [--weights FILE]
                                    [--size 1024] [--no-keras]

On --n photo-like JPEGs (make_corpus.py, seed 0; EXIF orientation on some) and one weights file
(generated in the official layout unless --weights is given), each command timed from process
start to exit, interleaved --repeat times (median reported), with a fresh compiled-network cache
for the run (its first command starts cold, as a user's first run does):
  - xception predict DIR -f jsonl -o FILE --no-progress              (the top-5 labels)
  - xception explain DIR -o OUT --size S --no-progress               (the top class's map over each
    photo, PNG at S px on the long side, and its record)
Target: explain <= 1.5x predict's time (wall; the CPU time each asked for is printed beside it,
the steadier figure on a shared machine). Then, for comparison, Keras' Grad-CAM recipe on the same
photos in one process (keras.applications.Xception on the same weights file, each photo loaded with
keras.utils.load_img at 299x299, a GradientTape per photo through block14_sepconv2_act, the map
weighted, rectified and scaled): the maps only, none drawn or written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from _common import OUT, PY, XCEPTION, corpus, timed  # noqa: E402

TARGET = 1.5


def keras_recipe(folder: Path, weights: Path) -> None:
    """Keras' Grad-CAM recipe on every photo of ``folder`` (runs in its own process)."""
    from xception_cli.runtimes.tensorflow import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.applications.Xception(weights=str(weights))
    model.layers[-1].activation = None  # the class score is the logit
    grad_model = keras.Model(model.inputs, [model.get_layer("block14_sepconv2_act").output, model.output])
    for path in sorted(folder.glob("*.jpg")):
        x = keras.applications.xception.preprocess_input(
            keras.utils.img_to_array(keras.utils.load_img(path, target_size=(299, 299)))[None])
        with tf.GradientTape() as tape:
            features, scores = grad_model(x)
            score = scores[:, int(tf.argmax(scores[0]))]
        weights_per_channel = tf.reduce_mean(tape.gradient(score, features), axis=(0, 1, 2))
        heat = tf.nn.relu(tf.reduce_sum(features[0] * weights_per_channel, axis=-1))
        np.asarray(heat / (tf.reduce_max(heat) + 1e-12))


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of a command: on a shared machine the CPU time is the
    steadier figure (what the command itself asked of the cores)."""
    before = os.times()
    wall = timed(cmd, env)["wall_s"]
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="photos in the folder (default 32)")
    ap.add_argument("--photo-size", default="4000x3000", help="the photos' size (default 4000x3000, 12 MP)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs of each command (median reported)")
    ap.add_argument("--weights", help="an official-layout .h5 (default: generated seeded weights, cached)")
    ap.add_argument("--size", default="1024", help="explain --size (default 1024)")
    ap.add_argument("--no-keras", action="store_true", help="leave out Keras' Grad-CAM recipe")
    ap.add_argument("--keras-recipe", type=Path, help=argparse.SUPPRESS)  # the recipe's own process
    args = ap.parse_args()
    if args.keras_recipe:
        return keras_recipe(args.keras_recipe, Path(args.weights))

    c.header(f"explain vs predict on a folder of {args.n} photos of {args.photo_size}, whole command")
    weights = c.weights_file(args.weights)
    folder = corpus(args.n, size=args.photo_size)
    env = c.cache_env()
    work = OUT / "explain-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    commands = {
        "predict": [XCEPTION, "predict", str(folder), "-f", "jsonl", "-o", str(work / "labels.jsonl"),
                    "--no-progress", "--weights", str(weights)],
        "explain": [XCEPTION, "explain", str(folder), "-o", str(work / "maps"), "--size", args.size,
                    "--no-progress", "--weights", str(weights)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(args.repeat):
        for name, cmd in commands.items():
            wall, used = measured(cmd, env)
            times[name].append(wall)
            cpu[name].append(used)
            print(f"run {i + 1}: {name} {wall:.2f} s, {used:.2f} s of CPU", flush=True)
    if not args.no_keras:
        wall, used = measured([PY, __file__, "--keras-recipe", str(folder), "--weights", str(weights)])
        times["keras_grad_cam"], cpu["keras_grad_cam"] = [wall], [used]
    median = {name: statistics.median(t) for name, t in times.items()}
    cpu_median = {name: statistics.median(t) for name, t in cpu.items()}
    ratio = median["explain"] / median["predict"]
    files = len(list((work / "maps").glob("*.png")))
    result = {
        "photos": args.n, "photo_size": args.photo_size, "explain_size": args.size, "overlays_written": files,
        "seconds": {name: {"median": round(m, 2), "runs": times[name]} for name, m in median.items()},
        "images_per_second": {name: round(args.n / m, 2) for name, m in median.items()},
        "cpu_seconds": {name: round(m, 2) for name, m in cpu_median.items()},
        "explain_over_predict": round(ratio, 2),
        "explain_over_predict_cpu": round(cpu_median["explain"] / cpu_median["predict"], 2),
        "keras_grad_cam_over_explain": round(median["keras_grad_cam"] / median["explain"], 2)
        if "keras_grad_cam" in median else None,
    }
    print(json.dumps(result, indent=2))
    print(f"explain / predict = {ratio:.2f}x (target <= {TARGET}x): {c.verdict(ratio <= TARGET)}")


if __name__ == "__main__":
    main()
