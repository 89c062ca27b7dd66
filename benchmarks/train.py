"""`xception train` (features computed once) vs the Keras transfer-learning guide's recipe (frozen base
recomputed every epoch): same dataset, same epochs, same run — time and validation accuracy.

usage: python benchmarks/train.py [--per-class 30] [--epochs 10]

The dataset is made by `xception_cli.synthetic.make_shapes_dataset` (three visual classes); the
weights are the calibrated seeded file of the other benchmarks. The Keras recipe: the Xception base
with `trainable = False`, called with `training=False`, global average pooling, dropout 0.2 and a
Dense softmax, Adam 1e-3, `model.fit` on the preprocessed photos (each epoch runs the base again).
Both use the same deterministic split (`xception_cli.train.prepare`, seed 0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, PY, ROOT, XCEPTION, header, weights_file  # noqa: E402

KERAS_RECIPE = r"""
import json, sys, time
t0 = time.perf_counter()
from xception_cli.runtimes.tensorflow import import_tensorflow_quietly
import_tensorflow_quietly()
import keras, numpy as np
from xception_cli.engine import Engine
from xception_cli.preprocess import preprocess_image
from xception_cli.train import TrainOptions, prepare
data_dir, weights, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = prepare(TrainOptions(data_dir=data_dir, output="unused.h5"))
load = lambda items: (np.stack([preprocess_image(p) for p, _ in items]), np.array([y for _, y in items]))
xtr, ytr = load(d.train)
xval, yval = load(d.val)
keras.utils.set_random_seed(0)
base = Engine(weights=weights, include_top=False, runtime_request="tensorflow").model
base.trainable = False
inputs = keras.Input((299, 299, 3))
x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
x = keras.layers.Dropout(0.2)(x)
model = keras.Model(inputs, keras.layers.Dense(len(d.classes), activation="softmax")(x))
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
t1 = time.perf_counter()
model.fit(xtr, ytr, batch_size=32, epochs=epochs, verbose=0)
acc = float(model.evaluate(xval, yval, verbose=0)[1])
print(json.dumps({"total_s": time.perf_counter() - t0, "fit_s": time.perf_counter() - t1, "val_accuracy": acc}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    header("xception train vs the Keras transfer-learning recipe, same data, same epochs")
    from xception_cli.synthetic import make_shapes_dataset

    OUT.mkdir(exist_ok=True)
    weights = weights_file()
    data = OUT / f"shapes-{args.per_class}"
    shutil.rmtree(data, ignore_errors=True)
    make_shapes_dataset(data, per_class=args.per_class)
    print(f"dataset: 3 classes x {args.per_class} photos; {args.epochs} epochs each", flush=True)

    t0 = time.perf_counter()
    model = OUT / "shapes-model.h5"
    subprocess.run([XCEPTION, "train", str(data), "-o", str(model), "--weights", str(weights), "--epochs",
                    str(args.epochs)], check=True, capture_output=True)
    ours_s = time.perf_counter() - t0
    ours = json.loads(Path(f"{model}.report.json").read_text())

    t1 = time.perf_counter()
    out = subprocess.run([PY, "-c", KERAS_RECIPE, str(data), str(weights), str(args.epochs)], check=True,
                         capture_output=True, text=True)
    keras_s = time.perf_counter() - t1
    theirs = json.loads(out.stdout.strip().splitlines()[-1])

    print(f"\n{'recipe':<44}{'whole command s':>16}{'val accuracy':>14}")
    print(f"{'xception train (features once, NumPy head)':<44}{ours_s:16.1f}{ours['final_val_accuracy']:14.3f}")
    print(f"{'Keras guide (frozen base, model.fit)':<44}{keras_s:16.1f}{theirs['val_accuracy']:14.3f}")
    print(f"\nspeed-up (same run): {keras_s / ours_s:.2f}x; ours: features {ours['timings_s']['features']:.1f} s, "
          f"head {ours['timings_s']['head']:.2f} s; Keras fit alone {theirs['fit_s']:.1f} s")
    print(f"\n(rerun: python {Path(__file__).relative_to(ROOT)} --per-class {args.per_class} --epochs {args.epochs})")


if __name__ == "__main__":
    main()
