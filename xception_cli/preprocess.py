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
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from .config import DEFAULT_PREPROCESS, RESIZE_MODES, PreprocessConfig
from .decode_budget import DECODE_BUDGET, RELEASES, working_bytes
from .errors import ImageError

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_WIDE_GRAY_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}  # made 8-bit gray before anything else
CHUNK_PIXELS = 1 << 20  # pixels a wide gray image is converted at a time (8 MiB of float64)
# The formats an input may be in, whatever its name says (JPEG includes MPO): Pillow's raster decoders
# only, never one that hands the file to another program (EPS to Ghostscript) or another container.
INPUT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


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
    im = measured_image(path, draft_to)
    with _image_errors():
        im.load()  # first frame of animated or multi-page files: Image.open starts there
    return im


def measured_image(path: str | os.PathLike | bytes, draft_to: int | None = None) -> Image.Image:
    """``open_image`` without decoding the pixels: the header read, the pixel and byte limits
    checked (``decoded_bytes``), a JPEG's draft scale chosen."""
    with _image_errors():
        if isinstance(path, (bytes, bytearray, memoryview)):
            if not len(path):
                raise ImageError("empty file (0 bytes)")
            im = Image.open(io.BytesIO(path), formats=INPUT_FORMATS)
        else:
            im = Image.open(_checked_file(Path(path)), formats=INPUT_FORMATS)
        try:
            _measure(im, draft_to)
        except BaseException:
            im.close()
            raise
        return im


def _measure(im: Image.Image, draft_to: int | None) -> None:
    limit = pixel_limit()
    w, h = im.size
    if limit and w * h > limit:
        raise ImageError(f"{w}x{h} pixels exceeds the decompression-bomb limit of {limit:,} pixels")
    if draft_to and im.format == "JPEG":
        im.draft("RGB", (draft_to, draft_to))
    size, most = decoded_bytes(im), byte_limit()
    if most and size > most:
        raise ImageError(f"{im.size[0]}x{im.size[1]} {im.mode} pixels take {size / 2**20:,.0f} MiB decoded, over "
                         f"the limit of {most / 2**20:,.0f} MiB (an RGB image at the pixel limit)")


@contextmanager
def _image_errors():
    """Pillow's and the system's exceptions as one-line ``ImageError``s."""
    try:
        yield
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


def decoded_bytes(im: Image.Image) -> int:
    """What ``im``'s pixels take decoded, from its header: pixels x bands x bytes per sample."""
    try:
        mode = ImageMode.getmode(im.mode)
        per_pixel = len(mode.bands) * max(1, int(mode.typestr[-1]))
    except (KeyError, ValueError):
        per_pixel = 4
    return im.size[0] * im.size[1] * per_pixel


def byte_limit() -> int | None:
    """The most bytes an image may take decoded: an RGB image at Pillow's pixel limit (256 MiB by
    default; none when the pixel limit is off)."""
    limit = pixel_limit()
    return 3 * limit if limit else None


@contextmanager
def decoded(source, draft_to: int | None = None):
    """``source`` (a path or the file's bytes) decoded within the limits (``measured_image``) and the
    shared budget (``working_bytes``); the image is valid inside only: closed after, and then, before
    its bytes go back to the budget, the freed memory to the system (``RELEASES``)."""
    im = measured_image(source, draft_to)
    try:
        need = working_bytes(im)
        if byte_limit() and need > DECODE_BUDGET.total:  # (a lossless WebP near the pixel limit)
            raise ImageError(f"{im.size[0]}x{im.size[1]} {im.format} takes {need / 2**20:,.0f} MiB to decode, over "
                             f"the {DECODE_BUDGET.total / 2**20:,.0f} MiB that all decoding may hold at once")
        with DECODE_BUDGET.reserve(need):
            try:
                with _image_errors():
                    im.load()  # first frame of animated or multi-page files: Image.open starts there
                yield im
            finally:
                im.close()
                RELEASES.decoded(need)
    finally:
        im.close()


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
    if mode in _WIDE_GRAY_MODES:
        return to_gray8(im).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:  # composited a band of rows at a time: never a full-size RGBA copy or two
        w, h = im.size
        step = max(1, CHUNK_PIXELS // max(1, w))
        out = Image.new("RGB", im.size)
        for y in range(0, h, step):
            rgba = im.crop((0, y, w, min(h, y + step))).convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*background, 255))
            canvas.alpha_composite(rgba)
            out.paste(canvas.convert("RGB"), (0, y))
        return out
    return im.convert("RGB")


def to_gray8(im: Image.Image) -> Image.Image:
    """A 16-bit, ``I`` or ``F`` image as 8-bit ``L``: 16-bit (and ``I`` above 255) scaled from
    0-65535, ``F`` up to 1.0 from 0-1. Converted a band of rows at a time: the float64 working
    copy is never larger than ``CHUNK_PIXELS``, whatever the image's size."""
    w, h = im.size
    step = max(1, CHUNK_PIXELS // max(1, w))
    boxes = [(0, y, w, min(h, y + step)) for y in range(0, h, step)]
    sixteen = im.mode in _SIXTEEN_BIT_MODES
    top = 0 if sixteen else np.max([np.asarray(im.crop(box)).max(initial=0) for box in boxes] or [0])
    out = np.empty((h, w), np.uint8)
    for box in boxes:
        arr = np.asarray(im.crop(box), dtype=np.float64)
        if sixteen or (im.mode == "I" and top > 255):
            arr = arr / 257.0  # 16-bit range to 8-bit
        elif im.mode == "F" and top <= 1.0:
            arr = arr * 255.0
        out[box[1]:box[3]] = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(out)


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
    with decoded(source, draft_to=decode_size(size, resize, cfg)) as im:
        return _prepare(im, size, resize, cfg)


def _prepare(im: Image.Image, size: int, resize: str, cfg: PreprocessConfig) -> np.ndarray:
    try:
        if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation: only then a turned copy (Pillow copies always)
            im = ImageOps.exif_transpose(im) or im
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the photo
        pass
    try:
        if im.mode in _WIDE_GRAY_MODES:  # resized as 8-bit gray, then made RGB: 1 byte a pixel, not 4
            im = resize_image(to_gray8(im), size, resize, cfg).convert("RGB")
        else:
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


def from_input(x: np.ndarray, cfg: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """``to_input``'s inverse: Xception's float32 input back to uint8 RGB pixels (exact on what
    ``to_input`` gives; other values round to the nearest level, clipped to 0-255)."""
    y = (np.asarray(x, dtype=np.float32) - np.float32(cfg.offset)) * np.float32(cfg.scale)
    return np.clip(np.rint(y, out=y), 0, 255, out=y).astype(np.uint8)


def preprocess_image(source, size: int = DEFAULT_PREPROCESS.input_size, resize: str = "center-crop") -> np.ndarray:
    """``load_image`` then ``to_input``: the float32 ``(size, size, 3)`` array the model takes."""
    return to_input(load_image(source, size, resize))
