"""Stand-in weights for tests and benchmarks, written in the official file layout.

The ImageNet weights cannot be downloaded everywhere (CI, air-gapped machines). Plain seeded
random weights make a network that maps every image to nearly the same features, where float
noise then decides the top-5. ``calibrated_weights`` makes random weights behave like trained
ones: every BatchNormalization's moving statistics are set to the statistics of its input on a
few real photos, and the classifier is centred on their pooled features, so top-k depends on the
image and two implementations agree to ~1e-5.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def calibrate(model, images: np.ndarray, seed: int = 0, logit_scale: float = 4.0) -> None:
    """Give ``model`` (Xception with the top, random init) trained-like statistics in place.

    ``images``: a float32 batch already preprocessed to ``[-1, 1]``.
    """
    import keras

    rng = np.random.default_rng(seed)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        gamma, beta, mean, var = layer.get_weights()
        gamma = rng.uniform(0.6, 1.4, gamma.shape).astype(np.float32)
        beta = rng.normal(0.0, 0.2, beta.shape).astype(np.float32)
        layer.set_weights([gamma, beta, mean, var])
    # One training-mode pass normalises every BatchNormalization by the batch statistics of its
    # own input; momentum 0 makes those statistics the moving ones, so inference reproduces it.
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    try:
        model(images, training=True)
    finally:
        for layer, momentum in zip(bns, saved):
            layer.momentum = momentum
    head = model.get_layer("predictions")
    features = keras.Model(model.input, head.input)(images, training=False)
    features = np.asarray(features, dtype=np.float64)
    kernel = rng.normal(0.0, 1.0, head.get_weights()[0].shape)
    centred = features - features.mean(axis=0)
    spread = np.std(centred @ kernel) or 1.0
    kernel *= logit_scale / spread
    bias = -features.mean(axis=0) @ kernel
    head.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])


def write_legacy_h5(model, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights as a Keras-2 HDF5 weights file, the official files' layout.

    Root attribute ``layer_names`` lists every layer; each layer's group has ``weight_names``
    and one dataset per weight, in the layer's weight order.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.path.split('/')[-1]}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name, data=value)
    return path


def sample_batch(paths, size: int = 299) -> np.ndarray:
    """Preprocessed float32 batch of photos (squashed to ``size``) for calibration."""
    from .preprocess import preprocess_image

    return np.stack([preprocess_image(p, size, "squash") for p in paths])


def make_weights_file(path: str | os.PathLike, calibration_images, seed: int = 0, include_top: bool = True) -> Path:
    """Build Xception with seeded random weights, calibrate it on the given photos, write it.

    The result loads exactly like the official file (``--weights PATH``), in ours and in
    ``keras.applications.Xception(weights=PATH)``.
    """
    import keras

    from .model import build_xception

    keras.utils.set_random_seed(seed)
    model = build_xception(include_top=True)
    calibrate(model, sample_batch(calibration_images), seed=seed)
    if not include_top:
        model = keras.Model(model.input, model.get_layer("block14_sepconv2_act").output)
    return write_legacy_h5(model, path)


def make_shapes_dataset(root: str | os.PathLike, per_class: int = 10, seed: int = 1) -> Path:
    """Three clearly different visual classes: red noise, black-and-white stripes, blue circles on yellow."""
    from PIL import Image, ImageDraw

    root = Path(root)
    rng = np.random.default_rng(seed)

    def red():
        return Image.fromarray(rng.normal([200, 40, 40], 25, (150, 200, 3)).clip(0, 255).astype(np.uint8))

    def stripes():
        a = np.zeros((150, 200, 3), np.uint8)
        w = int(rng.integers(6, 14))
        for x in range(0, 200, 2 * w):
            a[:, x:x + w] = 255
        return Image.fromarray((a + rng.normal(0, 10, a.shape)).clip(0, 255).astype(np.uint8))

    def circles():
        im = Image.new("RGB", (200, 150), (230, 220, 40))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(2, 6))):
            x, y, r = int(rng.integers(20, 180)), int(rng.integers(20, 130)), int(rng.integers(10, 30))
            d.ellipse((x - r, y - r, x + r, y + r), fill=(30, 40, 200))
        return im

    for name, make in [("red", red), ("stripes", stripes), ("circles", circles)]:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            make().save(root / name / f"{name}{i}.png")
    return root
