"""Image decoding and preprocessing: Pillow and NumPy only.

``load_image`` turns a file (or a PIL image / array) into the 299x299 RGB uint8 pixels the model
sees; ``to_input`` scales them to the float32 ``[-1, 1]`` range Xception was trained on. Keeping
the two apart lets the pipeline move compact uint8 arrays between threads.

Every failure is an ``ImageError`` with a one-line, human message.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import DEFAULT_PREPROCESS, RESIZE_MODES, PreprocessConfig
from .errors import ImageError

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def pixel_limit() -> int | None:
    """Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), read at call time."""
    return Image.MAX_IMAGE_PIXELS


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a file"


def decode_size(size: int, resize: str, cfg: PreprocessConfig = DEFAULT_PREPROCESS) -> int:
    """The short side an image needs before the final resize (used for JPEG draft decoding)."""
    if resize == "center-crop":
        return math.floor(size / cfg.crop_pct)
    return size


def open_image(path: str | os.PathLike | bytes, draft_to: int | None = None) -> Image.Image:
    """Open and fully decode the first frame of an image file (or of its bytes, e.g. an object
    read from S3), with friendly errors.

    ``draft_to``: let libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale as long as both sides stay at
    least this many pixels (much faster on phone photos).
    """
    try:
        if isinstance(path, (bytes, bytearray, memoryview)):
            if not len(path):
                raise ImageError("empty file (0 bytes)")
            im = Image.open(io.BytesIO(path))
        else:
            im = Image.open(_checked_file(Path(path)))
        limit = pixel_limit()
        w, h = im.size
        if limit and w * h > limit:
            raise ImageError(f"{w}x{h} pixels exceeds the decompression-bomb limit of {limit:,} pixels")
        if draft_to and im.format == "JPEG":
            im.draft("RGB", (draft_to, draft_to))
        im.load()  # first frame of animated or multi-page files: Image.open starts there
        return im
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError("file not found (it may have been moved or deleted)") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except IsADirectoryError:
        raise ImageError("is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format (is the extension wrong?)") from None
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)):,} pixels" if found else "the image"
        raise ImageError(f"{size} exceeds the decompression-bomb limit of {pixel_limit():,} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e).strip().split("\n")[0] or type(e).__name__
        if "truncated" in msg:
            raise ImageError(f"truncated or incomplete image data ({msg})") from None
        raise ImageError(f"cannot decode image: {msg}") from None


def _checked_file(p: Path) -> Path:
    if p.is_symlink() and not p.exists():
        raise ImageError("broken symbolic link")
    st = p.stat()
    if stat.S_ISDIR(st.st_mode):
        raise ImageError("is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):  # never opened: reading a FIFO or a device can block forever
        raise ImageError(f"not a regular file ({_file_kind(st.st_mode)})")
    if st.st_size == 0:
        raise ImageError("empty file (0 bytes)")
    return p


def to_rgb(im: Image.Image, background: tuple[int, int, int] = DEFAULT_PREPROCESS.background) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on ``background``."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode in _SIXTEEN_BIT_MODES or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0  # 16-bit range to 8-bit
        elif mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        gray = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return im.convert("RGB")


def resize_image(
    im: Image.Image, size: int, resize: str = "center-crop", cfg: PreprocessConfig = DEFAULT_PREPROCESS
) -> Image.Image:
    """Resize an RGB image to ``size`` x ``size``.

    ``center-crop``: the short side goes to ``floor(size / crop_pct)`` and the centre square is
    kept, in one resampling pass (Pillow's ``box``). ``squash``: straight to ``size`` x ``size``,
    ignoring the aspect ratio; an image already that size is returned untouched.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    resample = _RESAMPLE[cfg.interpolation]
    w, h = im.size
    if resize == "squash":
        if (w, h) == (size, size):
            return im
        return im.resize((size, size), resample)
    scale = decode_size(size, resize, cfg) / min(w, h)
    side = size / scale  # the crop's side in source pixels
    left, top = (w - side) / 2, (h - side) / 2
    return im.resize((size, size), resample, box=(left, top, left + side, top + side))


def load_image(
    source,
    size: int = DEFAULT_PREPROCESS.input_size,
    resize: str = "center-crop",
    cfg: PreprocessConfig = DEFAULT_PREPROCESS,
) -> np.ndarray:
    """Decode ``source`` (a path, the file's bytes, a PIL image or an HxWx3 uint8 array) to
    ``(size, size, 3)`` uint8 RGB.

    EXIF orientation is applied, every mode becomes RGB, and big JPEGs are draft-decoded.
    """
    if isinstance(source, np.ndarray):
        return _prepare(array_to_image(source), size, resize, cfg)
    if isinstance(source, Image.Image):
        return _prepare(source, size, resize, cfg)
    with open_image(source, draft_to=decode_size(size, resize, cfg)) as im:
        return _prepare(im, size, resize, cfg)


def _prepare(im: Image.Image, size: int, resize: str, cfg: PreprocessConfig) -> np.ndarray:
    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the photo
        pass
    try:
        im = resize_image(to_rgb(im, cfg.background), size, resize, cfg)
        return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        if isinstance(e, ValueError) and "resize must be" in str(e):
            raise
        raise ImageError(f"cannot decode image: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def array_to_image(arr: np.ndarray) -> Image.Image:
    """An HxW or HxWx{1,3,4} array (uint8, or float in [0, 255]) as a PIL image."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float64)), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def to_input(pixels: np.ndarray, cfg: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """Scale uint8 RGB pixels to Xception's float32 input: ``x / 127.5 - 1`` (Keras' "tf" mode)."""
    x = np.asarray(pixels).astype(np.float32)
    x /= np.float32(cfg.scale)
    x += np.float32(cfg.offset)
    return x


def preprocess_image(source, size: int = DEFAULT_PREPROCESS.input_size, resize: str = "center-crop") -> np.ndarray:
    """``load_image`` then ``to_input``: the float32 ``(size, size, 3)`` array the model takes."""
    return to_input(load_image(source, size, resize))
