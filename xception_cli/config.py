"""Reference facts as named data: one place for every constant the model relies on.

Nothing here imports TensorFlow, Keras or Click.
"""

from __future__ import annotations

from dataclasses import dataclass

WEIGHTS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/xception/"


@dataclass(frozen=True)
class WeightsFile:
    """One official Keras ImageNet weights file."""

    filename: str
    md5: str

    @property
    def url(self) -> str:
        return WEIGHTS_BASE_URL + self.filename


WEIGHTS_TOP = WeightsFile("xception_weights_tf_dim_ordering_tf_kernels.h5", "0a58e3b7378bc2990ea3b43d5981f1f6")
WEIGHTS_NOTOP = WeightsFile(
    "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "b0042744bf5b25fce3cb969f33bebb97"
)


FEATURES = 2048  # channels of the last feature map: the length of every embedding `embed` writes


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the network's input (timm's ``default_cfg`` idea)."""

    input_size: int = 299
    # centre-crop mode: the short side goes to input_size / crop_pct, then the centre is cropped.
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    # Keras "tf" mode: RGB, x / 127.5 - 1, no mean/std, no channel swap.
    scale: float = 127.5
    offset: float = -1.0
    # Composite transparent images on this background.
    background: tuple[int, int, int] = (255, 255, 255)


DEFAULT_PREPROCESS = PreprocessConfig()
RESIZE_MODES = ("center-crop", "squash")

MIN_INPUT_SIZE = 71
IMAGENET_INPUT_SIZE = 299
IMAGENET_CLASSES = 1000

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# Published / reference numbers (FACTS.md), used by tests and shown by `summary`.
REFERENCE_PARAMS_TOP = 22_910_480
REFERENCE_PARAMS_NOTOP = 20_861_480
REFERENCE_MACS_TOP = 8_357_403_496
