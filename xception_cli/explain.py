"""Class activation maps from the pass that classifies: ``Explainer(weights=...).explain(photos)``.

Xception's top is global average pooling and one dense layer, so the gradient of a class's score
with respect to the last feature map (``block14_sepconv2_act``, 10x10x2048 at 299x299) is that
class's column of the dense kernel divided by the map's 100 positions: Grad-CAM's channel weights
*are* the classifier's weights, and its map is the class activation map
``M_c = sum_k W[k, c] * A_k``, rectified and scaled to ``[0, 1]``. No gradient is needed.

So the network runs once per batch without its top (the feature map, on any runtime: OpenVINO
needs no TensorFlow), and the top is applied here in NumPy from the weights file's own classifier
(read once): the pooled features times the kernel plus the bias, softmax — the same probabilities
``predict`` gives — and, for each class explained, its map. A model from ``xception train`` (its
own classes over pooled features) works the same way.

Each photo is decoded for the network exactly as ``predict`` decodes it, and once more (a JPEG at
a draft scale that keeps the requested size) as the picture the map is laid over: EXIF orientation
applied, at most ``size`` pixels on its long side; ``box`` says which part of it the network saw
(all of it with ``squash``, the centre square with ``center-crop``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import config
from .config import RESIZE_MODES
from .errors import WeightsError
from .labels import Prediction, class_index
from .pipeline import Decoder, default_workers
from .preprocess import (
    DECODE_BUDGET,
    decode_size,
    load_image,
    measured_image,
    open_image,
    to_rgb,
    working_bytes,
)

FEATURES = "block14_sepconv2_act"  # the layer whose map is explained (Keras' name)
READS = ("random", "legacy-h5")  # weights formats whose classifier is read here (an IR ends with its softmax)
DRAFT_SHARE = 0.95  # of the size shown, the least a JPEG's reduced decoding may give before it is resized


# -- the classifier, in NumPy ------------------------------------------------------------------


@dataclass(frozen=True)
class Top:
    """The classifier over pooled features: ``kernel`` ``(2048, C)``, ``bias`` ``(C,)`` (float64)."""

    kernel: np.ndarray
    bias: np.ndarray

    @property
    def classes(self) -> int:
        return self.bias.shape[0]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` softmax of the average-pooled ``(N, h, w, 2048)`` features, float32."""
        pooled = np.asarray(features, dtype=np.float64).mean(axis=(1, 2))
        logits = pooled @ self.kernel + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def maps(self, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """``(N, k, h, w)`` class activation maps: ``features`` ``(N, h, w, 2048)``, ``classes``
        ``(N, k)`` class indices; each map rectified and scaled to ``[0, 1]`` (all zero when the
        class has no positive evidence anywhere)."""
        f = np.asarray(features, dtype=np.float64)
        n, h, w, _ = f.shape
        classes = np.asarray(classes, dtype=np.intp).reshape(n, -1)
        out = np.einsum("nhwc,cnk->nkhw", f, self.kernel[:, classes]) if n else np.zeros((0, 0, h, w))
        return scaled(out)


def scaled(maps: np.ndarray) -> np.ndarray:
    """Maps ``(..., h, w)`` rectified and divided by their maximum (float32; a map with no
    positive value stays all zero)."""
    m = np.maximum(np.asarray(maps, dtype=np.float64), 0.0)
    top = m.max(axis=(-2, -1), keepdims=True) if m.size else m
    return np.divide(m, top, out=np.zeros_like(m), where=top > 0).astype(np.float32)


def read_top(source) -> Top:
    """The classifier of a resolved ``weights.WeightsSource``, read once: the last layer with
    weights of an official-layout .h5 (ImageNet's 1000 classes, or a trained model's N), or the
    seeded random classifier every runtime uses for ``--weights none``."""
    if source.format == "random":
        from .weights import random_weights

        kernel, bias = random_weights(include_top=True)["predictions"]
    elif source.format == "legacy-h5":
        kernel, bias = _h5_classifier(source.path)
    else:
        raise WeightsError(f"{source.path}: explain reads the classifier from an official-layout .h5 (as Keras "
                           f"writes for Xception, or xception train) or random weights, not a {source.format} file")
    return Top(np.asarray(kernel, dtype=np.float64), np.asarray(bias, dtype=np.float64))


def _h5_classifier(path) -> tuple[np.ndarray, np.ndarray]:
    """The last weighted layer of a legacy .h5, checked to be a classifier over 2048 features
    (shapes and types before anything is read, then finite values)."""
    import h5py

    def bad(why: str) -> WeightsError:
        return WeightsError(f"{path}: no classifier over the 2048 pooled features ({why}): explain needs the "
                            "weights with the top")

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            names = [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in root.attrs.get("layer_names", [])]
            for name in reversed(names):
                group = root[name]
                weights = [w.decode("utf8") if isinstance(w, bytes) else str(w)
                           for w in group.attrs.get("weight_names", [])]
                if weights:
                    break
            else:
                raise bad("no layer with weights")
            if len(weights) != 2:
                raise bad(f"its last layer '{name}' has {len(weights)} arrays")
            kernel, bias = (group[w] for w in weights)
            if not all(isinstance(d, h5py.Dataset) and d.dtype.kind == "f" for d in (kernel, bias)) or \
                    kernel.ndim != 2 or bias.ndim != 1 or kernel.shape != (2048, bias.shape[0]):
                raise bad(f"its last layer '{name}' has shapes {kernel.shape} and {bias.shape}")
            kernel, bias = kernel[()], bias[()]
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: cannot read as a Keras HDF5 weights file ({str(e).splitlines()[0]})") from None
    if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
        raise WeightsError(f"{path}: the classifier '{name}' holds NaN or infinite values")
    return kernel, bias


# -- photos --------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """One photo, decoded for the network (``pixels``, as ``predict`` decodes it) and to be shown
    (``photo``: RGB, oriented, at most the size asked); ``box``: the part of ``photo`` the network
    saw, as fractions (left, top, right, bottom)."""

    pixels: np.ndarray
    photo: Image.Image
    box: tuple[float, float, float, float]


def view_box(width: int, height: int, size: int, resize: str) -> tuple[float, float, float, float]:
    """What the network sees of a ``width`` x ``height`` photo, as fractions of it."""
    if resize == "squash":
        return 0.0, 0.0, 1.0, 1.0
    side = size * min(width, height) / decode_size(size, resize)  # preprocess.resize_image's crop
    dx, dy = (width - side) / 2 / width, (height - side) / 2 / height
    return dx, dy, 1 - dx, 1 - dy


def load_photo(source, size: int, resize: str, long_side: int | None) -> Decoded:
    """``source`` (a path or the file's bytes) decoded for the network and to be shown;
    ``long_side``: the shown photo's most pixels on its long side (``None``: its own size)."""
    head = measured_image(source)  # the header only: missing, unreadable or oversized files end here
    width, height, jpeg, need = *head.size, head.format == "JPEG", working_bytes(head)
    head.close()
    # a JPEG decoded at the smallest scale (1/2, 1/4, 1/8) that keeps 95% of the size shown: a 4000x3000 photo
    # at 1/4 (1000x750) for 1024, then resized up 2.4%, costs half what 1/2 (2000x1500) does, and looks the same
    draft = math.ceil(DRAFT_SHARE * long_side * min(width, height) / max(width, height)) if long_side and jpeg \
        else None
    with DECODE_BUDGET.reserve(need):
        im = open_image(source, draft_to=draft)
    with im:
        # the network's pixels: predict's own decoding (a JPEG at its own draft scale), or this image
        pixels = load_image(source, size, resize) if jpeg else load_image(im, size, resize)
        photo = shown_photo(im, long_side, (width, height))
    return Decoded(pixels, photo, view_box(*photo.size, size, resize))


# EXIF orientation -> the turn that shows the photo upright (the EXIF specification's table)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def shown_photo(im: Image.Image, long_side: int | None, original: tuple[int, int] | None = None) -> Image.Image:
    """The photo as a person sees it: RGB, at most ``long_side`` pixels on its long side (never
    larger than the ``original`` it was decoded from, at a JPEG's reduced scale maybe; Pillow's
    antialiased bilinear), EXIF orientation applied (after the resize: a smaller image to turn)."""
    try:
        turn = _UPRIGHT.get(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the photo (as preprocess)
        turn = None
    im = to_rgb(im)
    w, h = original or im.size
    scale = min(1.0, long_side / max(w, h)) if long_side else 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != im.size:
        im = im.resize(size, Image.Resampling.BILINEAR)
    return im.transpose(turn) if turn is not None else im


class PhotoDecoder(Decoder):
    """The pipeline's decoder, each item decoded for the network and to be shown (``Decoded``)."""

    def __init__(self, items, *, long_side: int | None, **options):
        self.long_side = long_side
        super().__init__(items, **options)

    def load(self, source, size: int, resize: str) -> Decoded:
        if isinstance(source, np.ndarray | Image.Image):
            pixels = load_image(source, size, resize)
            photo = shown_photo(source if isinstance(source, Image.Image) else Image.fromarray(source), self.long_side)
            return Decoded(pixels, photo, view_box(*photo.size, size, resize))
        return load_photo(source, size, resize, self.long_side)


# -- explaining ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explain:
    """The explain head: the ``k`` most probable classes, or the ``classes`` named (indices;
    ``named``: as the user named them, before the labels are known). Its records are ``predict``'s
    (``predictions``), each label with its files."""

    k: int = 1
    classes: tuple[int, ...] | None = None
    named: tuple[str, ...] | None = None
    key = "predictions"
    include_top = False
    pooling = None
    done, doing = "explained", "explaining"

    def __post_init__(self):
        if self.classes is not None or self.named is not None:
            object.__setattr__(self, "k", len(self.classes if self.classes is not None else self.named))
        if self.k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.k}")

    def chosen(self, probabilities: np.ndarray) -> np.ndarray:
        """``(N, k)`` the classes explained per image, most probable first (or as named)."""
        n, c = probabilities.shape
        if self.classes is not None:
            return np.tile(np.asarray(self.classes, dtype=np.intp), (n, 1))
        return np.argsort(-probabilities, axis=1, kind="stable")[:, :min(self.k, c)]


@dataclass
class Explanation:
    """One input's result: the classes explained (``predict``'s ``Prediction``: rank among all
    classes, index, wnid, label, probability) with a map each (``maps``: ``(k, h, w)`` in
    ``[0, 1]``), the photo they are shown on and the part of it the network saw; or ``error``."""

    path: str
    predictions: list[Prediction] = field(default_factory=list)
    maps: np.ndarray | None = None
    photo: Image.Image | None = None
    box: tuple[float, float, float, float] | None = None
    error: str | None = None


class Explainer:
    """Class activation maps from one forward pass, on the fast runtime.

    >>> ex = Explainer(weights="imagenet")                      # doctest: +SKIP
    >>> e = ex.explain("cat.jpg")[0]                             # doctest: +SKIP
    >>> e.predictions[0].label, e.maps[0].shape                  # doctest: +SKIP
    ('tabby', (10, 10))

    Args as ``Classifier``, plus ``size``: the shown photo's most pixels on its long side (``None``:
    its own size). ``--weights`` must hold the classifier: the official .h5 (``imagenet``), a
    model from ``xception train``, or ``none`` (random).
    """

    def __init__(self, weights="imagenet", resize: str | None = None, precision: str = "float32",
                 batch_size: int = 8, workers: int | None = None, progress=None, runtime: str | None = None,
                 size: int | None = 1024):
        from .engine import get_engine
        from .weights import RANDOM, describe, weights_source

        if resize is not None and resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.source = weights_source(weights, include_top=True, progress=progress)  # the file with the classifier
        if self.source.format not in READS:
            read_top(self.source)  # says why not
        info = describe(self.source)
        self.labels = tuple(info.class_names) if info.class_names else None
        self.resize = resize or info.resize_for(None)
        self.engine = get_engine(weights=RANDOM if self.source.random else str(self.source.path),
                                 include_top=False, pooling=None, precision=precision, runtime=runtime)
        self.batch_size, self.workers, self.size = batch_size, workers, size
        self._top: Top | None = None

    @property
    def top(self) -> Top:
        if self._top is None:
            top = read_top(self.source)
            if self.labels and len(self.labels) != top.classes:
                raise WeightsError(f"{self.source.path}: {len(self.labels)} class names for a classifier of "
                                   f"{top.classes} classes")
            self._top = top
        return self._top

    def load(self) -> Explainer:
        """Load the network and the classifier now (otherwise on first use)."""
        _ = self.engine.network, self.top
        return self

    @property
    def notes(self) -> list[str]:
        return list(self.engine.network.notes)

    def class_names(self) -> list[tuple[str | None, str]]:
        """``(wnid, label)`` per class: ImageNet's, or a trained model's own (wnid ``None``)."""
        if self.labels:
            return [(None, name) for name in self.labels]
        return list(class_index()) if self.top.classes == config.IMAGENET_CLASSES else \
            [("", f"class_{i}") for i in range(self.top.classes)]

    def decoder(self, items: Iterable[tuple[str, object]]) -> PhotoDecoder:
        """Start decoding ``(name, source)`` pairs now (e.g. while the model loads)."""
        workers = self.workers or default_workers()
        # photos wait shown-size (2.4 MB at 1024 px): two batches ahead; at full size, one and the threads' own
        window = max(2 * self.batch_size, 32) if self.size else self.batch_size + workers
        return PhotoDecoder(items, long_side=self.size, size=config.IMAGENET_INPUT_SIZE, resize=self.resize,
                            workers=workers, window=window)

    def stream(self, items, head: Explain = Explain()) -> Iterator[list[Explanation]]:
        """Explain ``(name, source)`` pairs (or a running ``decoder``) lazily, a batch at a time, in order."""
        decoder = items if isinstance(items, PhotoDecoder) else self.decoder(items)
        names = self.class_names()
        try:
            while True:
                entries = []
                for name, decoded, err, _ in decoder:
                    entries.append((name, decoded, err))
                    if sum(e[2] is None for e in entries) == self.batch_size:
                        break
                if not entries:
                    return
                yield self._batch(entries, head, names)
        finally:
            decoder.close()

    def _batch(self, entries, head: Explain, names) -> list[Explanation]:
        ok = [d for _, d, err in entries if err is None]
        if ok:
            features = self.engine.infer_pixels(np.stack([d.pixels for d in ok]))
            probs = self.top.probabilities(features)
            chosen = head.chosen(probs)
            maps = self.top.maps(features, chosen)
            ranks = np.argsort(np.argsort(-probs, axis=1, kind="stable"), axis=1, kind="stable") + 1
        out, i = [], 0
        for name, decoded, err in entries:
            if err is not None:
                out.append(Explanation(name, error=err))
                continue
            preds = [Prediction(int(ranks[i, c]), int(c), *names[c], float(probs[i, c])) for c in chosen[i]]
            out.append(Explanation(name, preds, maps[i], decoded.photo, decoded.box))
            i += 1
        return out

    def explain(self, inputs, k: int = 1, classes: Iterable[int] | None = None) -> list[Explanation]:
        """Explain one input or a list (paths, file bytes, PIL images or HxWx3 uint8 arrays): the
        ``k`` most probable classes, or the ``classes`` (indices) named."""
        from .classifier import _as_list, _name

        head = Explain(k, tuple(classes) if classes is not None else None)
        items = [(_name(src, i), src) for i, src in enumerate(_as_list(inputs))]
        return [e for batch in self.stream(items, head) for e in batch]


def resolve_class(value: str, names: list[tuple[str | None, str]]) -> int:
    """``--class``: an index, a label or a WordNet ID (case-insensitive) -> the class index;
    ``ValueError`` naming close labels when it is none of them."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise ValueError(f"--class {value}: no such class (the classes are 0 to {len(names) - 1})")
        return index
    folded = text.casefold().replace(" ", "_")
    for i, (wnid, label) in enumerate(names):
        if folded in ((wnid or "").casefold(), label.casefold().replace(" ", "_")):
            return i
    import difflib

    close = difflib.get_close_matches(text, [label for _, label in names], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"--class {value}: no class has this index, label or WordNet ID{hint}")
