"""``xception train``: your own classes from a folder of labelled photos (no Click here).

``DATA_DIR`` holds one subfolder per class (``image_dataset_from_directory``'s convention). With
the base frozen, its output per image never changes, so the features are computed once, through
the fast runtime (``Embedder``), and the new head trains on them in seconds (softmax regression in
NumPy, Adam). Optional fine-tuning then unfreezes the last blocks in Keras on TensorFlow, with a
tiny learning rate and every BatchNormalization kept in inference mode (its statistics frozen).

The result is a weights file in the official layout with an N-class top, carrying its class names
and preprocessing as HDF5 attributes: ``xception predict PHOTOS --weights MODEL.h5`` prints your
labels, on any runtime, and loading it never executes code from the file. The model and its
report are published together through the output layer (``output.target``): never over the base
weights or a photo, nothing at either name when training fails.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__, config
from .errors import XceptionError

MIN_PER_CLASS = 3  # image files per class (at least one is held out for validation)


class TrainError(XceptionError):
    """A dataset or option that cannot be trained on (said before any work is done)."""


@dataclass
class TrainOptions:
    data_dir: str
    output: str
    val_split: float = 0.2
    val_dir: str | None = None
    epochs: int = 40
    fine_tune_epochs: int = 0
    unfreeze_from: int = 13  # the first block trained in the fine-tuning stage
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    augment: bool = False
    weights: str = "imagenet"
    seed: int = 0
    runtime: str | None = None
    resize: str | None = None  # None: what the base weights record, else center-crop
    follow_links: bool = False  # links out of the data (and validation) folder are followed


@dataclass
class Dataset:
    classes: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # links out of the data folder, not followed


def scan(folder: str, follow_links: bool = False, links: list[str] | None = None
         ) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted subfolders) and ``(path, class)`` items, images found recursively; links
    out of ``folder`` are not followed unless ``follow_links`` (they are added to ``links``)."""
    from .discovery import Tree, walk_images

    root = Path(folder)
    if not root.is_dir():
        raise TrainError(f"{folder}: not a folder (expected one subfolder of photos per class)")
    tree = Tree(folder, follow_links, links)
    classes = sorted(d.name for d in root.iterdir()
                     if d.is_dir() and not d.name.startswith(".") and tree.allows(str(d)))
    if len(classes) < 2:
        raise TrainError(f"{folder}: {len(classes)} class folder(s); training needs at least 2 "
                         "(one subfolder of photos per class)")
    items = [(p, i) for i, c in enumerate(classes)
             for p in walk_images(str(root / c), follow_links, tree.skipped, root=folder)]
    return classes, items


def _identity(path: str):
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return os.path.realpath(path)


def prepare(o: TrainOptions) -> Dataset:
    """Classes and a deterministic, stratified split (or ``--val-dir``); refuses a class with too
    few photos before any work."""
    links: list[str] = []
    classes, items = scan(o.data_dir, o.follow_links, links)
    counts = {c: sum(1 for _, y in items if y == i) for i, c in enumerate(classes)}
    need = MIN_PER_CLASS if o.val_dir is None else 1
    small = {c: n for c, n in counts.items() if n < need}
    if small:
        listed = ", ".join(f"'{c}' ({n})" for c, n in small.items())
        raise TrainError(f"{o.data_dir}: too few photos in {listed}: each class needs at least {need}")
    if o.val_dir is not None:
        val_classes, val_items = scan(o.val_dir, o.follow_links, links)
        unknown = sorted(set(val_classes) - set(classes))
        if unknown:
            raise TrainError(f"{o.val_dir}: classes not in {o.data_dir}: {', '.join(unknown)}")
        seen = {_identity(p) for p, _ in items}  # the same file by any name: links included
        shared = [p for p, _ in val_items if _identity(p) in seen]
        if shared:
            raise TrainError(f"{o.val_dir}: {len(shared)} of its photos are training photos too ({shared[0]}): "
                             "validate on other photos, or leave out --val-dir for a held-out split")
        index = {c: i for i, c in enumerate(classes)}
        return Dataset(classes, items, [(p, index[val_classes[y]]) for p, y in val_items], links=links)
    if not 0 < o.val_split < 1:
        raise TrainError(f"--val-split must be between 0 and 1, got {o.val_split}")
    rng = np.random.default_rng(o.seed)
    train, val = [], []
    for i in range(len(classes)):
        mine = [it for it in items if it[1] == i]
        order = rng.permutation(len(mine))
        n_val = min(len(mine) - 1, max(1, round(len(mine) * o.val_split)))
        val += [mine[j] for j in order[:n_val]]
        train += [mine[j] for j in order[n_val:]]
    return Dataset(classes, train, val, links=links)


def _augmented(path: str) -> list:
    """A horizontal flip and two small rotations of a photo (PIL images), for --augment. Decoded as
    predict decodes it (its formats, the pixel and byte limits, the shared budget, a JPEG at a
    reduced scale), made RGB and brought to the short side the network's resize starts from, then
    turned: three copies of that, not of the photo's full size."""
    from PIL import Image, ImageOps

    from .preprocess import decode_size, decoded, to_rgb

    side = decode_size(config.DEFAULT_PREPROCESS.input_size, "center-crop")
    with decoded(path, draft_to=side) as im:
        try:
            turned = ImageOps.exif_transpose(im) if im.getexif().get(0x0112, 1) != 1 else im
        except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the photo (as preprocess)
            turned = im
        rgb = to_rgb(turned)
        small = ImageOps.cover(rgb, (side, side), Image.Resampling.BICUBIC) if min(rgb.size) > side else rgb.copy()
    return [ImageOps.mirror(small), small.rotate(8, resample=Image.Resampling.BILINEAR),
            small.rotate(-8, resample=Image.Resampling.BILINEAR)]


def features(embedder, items, log, augment: bool = False) -> tuple[np.ndarray, np.ndarray, list]:
    """Embeddings (once, through the runtime layer) and labels; unreadable files skipped, counted."""
    records = [r for batch in embedder.stream([(p, p) for p, _ in items]) for r in batch]
    xs, ys, skipped = [], [], []
    for (path, y), r in zip(items, records):
        if r.error is not None:
            log(f"warning: {path}: {r.error} (skipped)")
            skipped.append((path, r.error))
            continue
        try:
            copies = _augmented(path) if augment else []
        except XceptionError as e:  # changed since it was read: the photo is left out, copies and all
            log(f"warning: {path}: {e} (skipped)")
            skipped.append((path, str(e)))
            continue
        xs.append(r.embedding)
        ys.append(y)
        if copies:
            xs += [c.embedding for c in embedder.records(copies)]
            ys += [y] * len(copies)
    dim = xs[0].shape[0] if xs else 2048
    return np.array(xs, np.float32).reshape(-1, dim), np.array(ys, np.int64), skipped


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_head(x, y, xv, yv, classes: int, epochs: int, batch_size: int, lr: float, seed: int,
               on_epoch: Callable[[dict], None] | None = None, weight_decay: float = 1e-4):
    """Softmax regression on cached features with Adam: ``(kernel [D, C], bias [C], history)``.

    Features are scaled by one global factor (their RMS) for conditioning, folded back into the
    kernel at the end, so the head applies to raw features as the Dense layer does.
    """
    rng = np.random.default_rng(seed)
    scale = float(np.sqrt(np.mean(x ** 2))) or 1.0
    xs, xvs = x / scale, (xv / scale if len(xv) else xv)
    w = np.zeros((x.shape[1], classes), np.float64)
    b = np.zeros(classes, np.float64)
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    history, step = [], 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(xs))
        for start in range(0, len(xs), batch_size):
            idx = order[start:start + batch_size]
            p = softmax(xs[idx] @ w + b)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            grads = [xs[idx].T @ p / len(idx) + weight_decay * w, p.mean(axis=0)]
            step += 1
            for k, (param, g) in enumerate(zip((w, b), grads)):
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                param -= lr * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
        row = {"stage": "head", "epoch": epoch, **_evaluate(xs, y, w, b, "train")}
        if len(xvs):
            row.update(_evaluate(xvs, yv, w, b, "val"))
        history.append(row)
        if on_epoch:
            on_epoch(row)
    return (w / scale).astype(np.float32), b.astype(np.float32), history


def _evaluate(x, y, w, b, prefix: str) -> dict:
    p = softmax(x @ w + b)
    loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
    return {f"{prefix}_loss": round(loss, 5), f"{prefix}_accuracy": round(float(np.mean(p.argmax(1) == y)), 4)}


def confusion(y_true, y_pred, classes: int) -> list[list[int]]:
    m = np.zeros((classes, classes), np.int64)
    for t, p in zip(y_true, y_pred):
        m[t, p] += 1
    return m.tolist()


def write_model(path: str, weights: dict[str, list], classes: list[str], extra: dict) -> None:
    """The official layout (so every runtime reads it) with an N-class top, class names and
    preprocessing as attributes, written at ``path`` as it is: ``run`` gives a staged path and
    publishes it with the report."""
    import h5py

    from .model import weight_layout
    from .weights import CLASS_NAMES_ATTR, PREPROCESS_ATTR

    layout = weight_layout(True, len(classes))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode("utf8") for name, _ in layout]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs[CLASS_NAMES_ATTR] = json.dumps(classes)
        f.attrs[PREPROCESS_ATTR] = json.dumps(extra)
        for name, shapes in layout:
            group = f.create_group(name)
            arrays = weights[name]
            names = [f"{name}/w{i}:0" for i in range(len(arrays))]
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for n, a, shape in zip(names, arrays, shapes):
                assert tuple(a.shape) == tuple(shape), (name, a.shape, shape)
                group.create_dataset(n, data=np.asarray(a, np.float32))


def fine_tune(o: TrainOptions, data: Dataset, weights: dict, log, on_epoch) -> tuple[dict, list]:
    """Keras on TensorFlow: blocks from ``unfreeze_from`` on trainable, BatchNormalization frozen
    (inference mode), a tiny learning rate; returns the new weights and the history."""
    from .fused import model_weights
    from .model import block_of, build_xception, weight_layout
    from .preprocess import preprocess_image
    from .runtimes.tensorflow import import_tensorflow_quietly
    from .weights import assign_by_order

    import_tensorflow_quietly()
    import keras

    keras.utils.set_random_seed(o.seed)
    model = build_xception(include_top=True, classes=len(data.classes), initialize=False)
    assign_by_order(model, [(n, weights[n]) for n, _ in weight_layout(True, len(data.classes))], "trained head")
    for layer in model.layers:
        blk = block_of(layer.name)
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = not is_bn and (blk is None or blk >= o.unfreeze_from)
    model.compile(optimizer=keras.optimizers.Adam(o.fine_tune_learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def load(items):
        xs, ys = [], []
        for p, y in items:
            try:
                xs.append(preprocess_image(p, resize=o.resize))
                ys.append(y)
            except XceptionError:
                continue
        return np.stack(xs), np.array(ys)

    xtr, ytr = load(data.train)
    xval, yval = load(data.val)
    if o.augment:
        xtr, ytr = np.concatenate([xtr, xtr[:, :, ::-1]]), np.concatenate([ytr, ytr])

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            on_epoch({"epoch": epoch + 1, "stage": "fine-tune", "train_loss": round(float(logs["loss"]), 5),
                      "train_accuracy": round(float(logs["accuracy"]), 4),
                      "val_loss": round(float(logs.get("val_loss", float("nan"))), 5),
                      "val_accuracy": round(float(logs.get("val_accuracy", float("nan"))), 4)})

    model.fit(xtr, ytr, batch_size=min(o.batch_size, 8), epochs=o.fine_tune_epochs, shuffle=True,
              validation_data=(xval, yval), verbose=0, callbacks=[Report()])
    return model_weights(model), model


def logged(message: str) -> None:
    """``log`` when a program gives none: the logger ``xception_cli`` (``warning: ...`` at WARNING)."""
    from .logs import logger

    if message.startswith("warning: "):
        logger.warning("%s", message.removeprefix("warning: "))
    else:
        logger.info("%s", message)


def run(o: TrainOptions, log: Callable[[str], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train; write ``o.output``, ``o.output`` + ``.report.json`` and the report as a page (``.report.html``),
    published together; return the report."""
    from .discovery import links_note
    from .output.charts import train_page
    from .output.target import Protected, Publication
    from .weights import describe, weights_files, weights_source

    out = Path(o.output)
    if out.suffix != ".h5":
        raise TrainError(f"{o.output}: the model is written as an .h5 weights file: "
                         f"use -o {out.with_suffix('.h5')}")
    if o.epochs < 1:
        raise TrainError("--epochs must be at least 1")
    data = prepare(o)  # every check before any work
    if links_note(data.links):
        (log or logged)(f"warning: {links_note(data.links)}")
    source = weights_source(o.weights, include_top=True)
    if source.format not in ("random", "legacy-h5"):
        raise TrainError(f"{source.path}: train reads the official-format .h5 weights (or none), "
                         f"not a {source.format} file")
    o = replace(o, resize=describe(source).resize_for(o.resize))  # recorded in the model written
    protected = Protected(inputs=[p for p, _ in data.train + data.val],
                          weights=[*weights_files(o.weights), *[str(p) for p in [source.path] if p]])
    with Publication(protected) as pub:  # both refused or claimed before any work; published together
        model_tmp, report_tmp = pub.stage(out), pub.stage(f"{out}.report.json", companion=True)
        page_tmp = pub.stage(f"{out}.report.html", companion=True)  # the report as a page (output.charts)
        report = _train(o, data, source, model_tmp, log or logged, on_epoch or (lambda row: None))
        report["model"] = out.name
        Path(report_tmp).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        Path(page_tmp).write_text(train_page(report), encoding="utf-8")
    return report


def _train(o: TrainOptions, data: Dataset, source, model_path: str, log, on_epoch) -> dict:
    """Features, the head, fine-tuning; the model written at ``model_path``; the report."""
    from .classifier import Embedder
    from .weights import md5sum, read_weights, weights_name

    t0 = time.perf_counter()
    # The same file for the features and for the model written (its top, if any, is dropped).
    base = "none" if source.path is None else str(source.path)
    embedder = Embedder(weights=base, pooling="avg", runtime=o.runtime, resize=o.resize)
    log(f"{len(data.classes)} classes, {len(data.train)} training and {len(data.val)} validation photos: "
        "computing features once")
    x, y, skipped_t = features(embedder, data.train, log, augment=o.augment)
    xv, yv, skipped_v = features(embedder, data.val, log)
    t_features = time.perf_counter() - t0
    for i, c in enumerate(data.classes):
        readable = int(np.sum(y == i)) // (4 if o.augment else 1) + int(np.sum(yv == i))
        if not np.any(y == i) or readable < MIN_PER_CLASS and o.val_dir is None:
            raise TrainError(f"class '{c}': {readable} readable photo(s); each class needs at least {MIN_PER_CLASS}")
        if not np.any(yv == i):
            log(f"warning: class '{c}' has no readable validation photo")
    t1 = time.perf_counter()
    kernel, bias, history = train_head(x, y, xv, yv, len(data.classes), o.epochs, o.batch_size, o.learning_rate,
                                       o.seed, on_epoch=on_epoch)
    t_head = time.perf_counter() - t1
    if source.path is not None:
        weights = read_weights(source.path, include_top=False)
    else:
        from .weights import random_weights

        weights = random_weights(include_top=False)
    weights["predictions"] = [kernel, bias]
    t_fine = 0.0
    if o.fine_tune_epochs:
        t2 = time.perf_counter()
        log(f"fine-tuning blocks {o.unfreeze_from}-14 for {o.fine_tune_epochs} epoch(s) on TensorFlow")
        weights, _ = fine_tune(o, data, weights, log, lambda row: (history.append(row), on_epoch(row)))
        t_fine = time.perf_counter() - t2
    meta = {"input_size": config.IMAGENET_INPUT_SIZE, "resize": o.resize,
            "crop_pct": config.DEFAULT_PREPROCESS.crop_pct, "scale": "x / 127.5 - 1",
            "base_weights": weights_name(o.weights),  # what identifies them, not where they live
            "base_weights_md5": None if source.path is None else md5sum(source.path),
            "created_by": f"xception-cli {__version__}"}
    write_model(model_path, weights, data.classes, meta)
    # Final validation numbers, from the model as written (the same code path as predict).
    final_val = _final_validation(model_path, data, xv, yv, kernel, bias, o)
    return {
        "classes": data.classes,
        "class_counts": {"train": {c: int(np.sum(y == i)) for i, c in enumerate(data.classes)},
                         "val": {c: int(np.sum(yv == i)) for i, c in enumerate(data.classes)}},
        "skipped": [{"path": _within(p, o), "error": e} for p, e in skipped_t + skipped_v],
        "history": history,
        "final_val_accuracy": final_val["accuracy"],
        "confusion_matrix": final_val["confusion"],
        "timings_s": {"features": round(t_features, 3), "head": round(t_head, 3), "fine_tune": round(t_fine, 3),
                      "total": round(time.perf_counter() - t0, 3)},
        "options": {k: weights_name(v) if k == "weights" else _folder_name(v) if k in PLACES else v
                    for k, v in vars(o).items()},
    }


# The report travels with the model: it names the folders and files it was made from, not where they
# live (a shared model says nothing of /home/alice).
PLACES = ("data_dir", "val_dir", "output")


def _folder_name(path: str | None) -> str | None:
    return None if path is None else os.path.basename(os.path.normpath(str(path)))


def _within(path: str, o: TrainOptions) -> str:
    """A photo's path from the class folders' parent (``cats/x.jpg``), not from the root."""
    for top in filter(None, (o.data_dir, o.val_dir)):
        rel = os.path.relpath(path, top)
        if not rel.startswith(os.pardir + os.sep) and rel != os.pardir:
            return rel
    return os.path.basename(path)


def _final_validation(path, data, xv, yv, kernel, bias, o) -> dict:
    if not len(yv):
        return {"accuracy": None, "confusion": []}
    if o.fine_tune_epochs:
        from .classifier import Classifier

        clf = Classifier(weights=path, runtime=o.runtime, resize=o.resize, top_k=1)
        preds, truth = [], []
        for (_, y), r in zip(data.val, clf.predict([p for p, _ in data.val], top_k=1)):
            if r.error is None:
                preds.append(r.predictions[0].index)
                truth.append(y)
    else:
        preds, truth = list(softmax(xv @ kernel + bias).argmax(1)), list(yv)
    acc = float(np.mean(np.array(preds) == np.array(truth))) if truth else None
    return {"accuracy": round(acc, 4) if acc is not None else None,
            "confusion": confusion(truth, preds, len(data.classes))}
