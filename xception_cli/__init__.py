"""xception-cli: ImageNet classification with Xception (Chollet, 2017) on Keras 3.

Everything is importable without Click, and importing the package does not load TensorFlow:
names are resolved lazily on first use.

    from xception_cli import Classifier
    Classifier(weights="imagenet").predict(["cat.jpg"])
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Classifier": "classifier",
    "Embedder": "classifier",
    "Classify": "heads",
    "Embed": "heads",
    "PredictJob": "jobs",
    "PredictOptions": "jobs",
    "load_embeddings": "output",
    "nearest": "similar",
    "SimilarityIndex": "similar",
    "duplicates": "similar",
    "Record": "pipeline",
    "Stats": "pipeline",
    "classify_stream": "pipeline",
    "Engine": "engine",
    "get_engine": "engine",
    "build_xception": "model",
    "Prediction": "labels",
    "class_index": "labels",
    "top_k": "labels",
    "ImageError": "errors",
    "load_image": "preprocess",
    "preprocess_image": "preprocess",
    "to_input": "preprocess",
    "WeightsError": "errors",
    "XceptionError": "errors",
    "load_weights": "weights",
    "resolve_weights": "weights",
    "discover": "discovery",
    "PreprocessConfig": "config",
    "DEFAULT_PREPROCESS": "config",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xception_cli' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
