"""The baseline: classify photos the way the Keras documentation shows, nothing more.

usage: python benchmarks/naive_keras.py PHOTO_OR_FOLDER [--mode loop|batch] [--weights imagenet|FILE]
                                        [--class-index FILE]

This is what a Keras user writes: load keras.applications.Xception, then for each photo
keras.utils.load_img(target_size=(299, 299)), img_to_array, xception.preprocess_input,
model.predict and decode_predictions, printing the top 5.
  loop:  one photo at a time, one predict call each;
  batch: every photo loaded and stacked first, then one predict call.
--weights FILE loads an official-layout .h5 (no download; the benchmarks generate one).
--class-index FILE hands decode_predictions the ImageNet class index it would otherwise download
on first use (the file shipped in xception_cli/data is that index).
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np
from keras.applications.xception import Xception, decode_predictions, preprocess_input

parser = argparse.ArgumentParser()
parser.add_argument("target", help="a photo, or a folder of photos")
parser.add_argument("--mode", choices=["loop", "batch"], default="loop")
parser.add_argument("--weights", default="imagenet")
parser.add_argument("--class-index")
args = parser.parse_args()

if args.class_index:
    # decode_predictions keeps the index it downloads in this module variable; fill it from the file.
    from keras.src.applications import imagenet_utils

    imagenet_utils.CLASS_INDEX = json.loads(Path(args.class_index).read_text())

target = Path(args.target)
if target.is_dir():
    photos = sorted(p for p in target.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
else:
    photos = [target]

model = Xception(weights=args.weights)


def load(path):
    img = keras.utils.load_img(path, target_size=(299, 299))
    return keras.utils.img_to_array(img)


def show(path, top5):
    print(path.name, ", ".join(f"{name} {score:.3f}" for _, name, score in top5))


if args.mode == "loop":
    for path in photos:
        x = preprocess_input(np.expand_dims(load(path), axis=0))
        preds = model.predict(x, verbose=0)
        show(path, decode_predictions(preds, top=5)[0])
else:
    x = preprocess_input(np.stack([load(path) for path in photos]))
    preds = model.predict(x, verbose=0)
    for path, top5 in zip(photos, decode_predictions(preds, top=5)):
        show(path, top5)
