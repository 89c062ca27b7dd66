"""Memory for decoding images: the budget the decoding threads share, what one image takes while it
is decoded and prepared (``working_bytes``, per format), and freed memory handed back to the system.

Limits on one image (pixels, bytes) are ``preprocess``'s; this module only holds the sums.
"""

from __future__ import annotations

import ctypes
import functools
import math
import threading
from contextlib import contextmanager

from PIL import Image, JpegImagePlugin


class ByteBudget:
    """Bytes shared by the threads that decode: ``reserve(n)`` waits until ``n`` more fit (an image
    larger than the whole budget waits until it is alone)."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, n: int):
        n = min(n, self.total)
        with self._cond:
            self._cond.wait_for(lambda: self.used + n <= self.total)
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


# All decoding threads of a process together. What one image holds while it is decoded and prepared,
# measured (peak RSS of load_image, Pillow 13, every mode and format at 9, 36 and 89 megapixels): up to
# 8.5 bytes a pixel (Pillow keeps up to 4, then one converted copy; a compressed TIFF 8.1), 5.3 for the
# 1-byte and 16-bit gray modes, a WebP 16-18 (libwebp's RGBA canvas, a copy, the conversion), plus up
# to 16 MiB of bands converted a slice at a time. 1 GiB is 8 12-megapixel PNGs at once, or one
# 9400x9400 LA PNG.
DECODE_BUDGET = ByteBudget(1 << 30)
WORKING_BYTES_PER_PIXEL = 9
PER_IMAGE_BYTES = 16 << 20
_NARROW_MODES = {"1", "L", "P", "I;16", "I;16L", "I;16B", "I;16N"}


def working_bytes(im: Image.Image) -> int:
    """What decoding and preparing ``im`` (opened, not yet loaded) holds at its peak, per format.

    A JPEG is decoded at its draft size, except that libjpeg keeps every coefficient of a
    progressive or multi-scan file at full size (2 bytes a sample: 3-8 bytes a pixel)."""
    per_pixel = 19 if im.format == "WEBP" else 6 if im.mode in _NARROW_MODES and im.format != "TIFF" else \
        WORKING_BYTES_PER_PIXEL
    out = im.size[0] * im.size[1] * per_pixel + PER_IMAGE_BYTES
    if isinstance(im, JpegImagePlugin.JpegImageFile) and _multi_scan(im):
        scale = (getattr(im, "decoderconfig", None) or (1,))[0]  # drafted: 1/scale of the file's size
        w, h = im.size[0] * scale, im.size[1] * scale
        hmax, vmax = max(c[1] for c in im.layer), max(c[2] for c in im.layer)
        out += sum(math.ceil(w * c[1] / hmax / 8) * math.ceil(h * c[2] / vmax / 8) * 128 for c in im.layer)
    return out


def _multi_scan(im: JpegImagePlugin.JpegImageFile) -> bool:
    """Progressive, or a first scan without every component (libjpeg then buffers the whole image);
    a header that cannot be walked counts as one."""
    if im.info.get("progressive") or not im.fp:
        return bool(im.info.get("progressive"))
    try:
        here = im.fp.tell()
    except OSError:
        return True
    try:
        im.fp.seek(2)  # after the start-of-image marker
        while im.fp.read(1) == b"\xff":
            kind = im.fp.read(1)
            while kind == b"\xff":  # fill bytes
                kind = im.fp.read(1)
            length = int.from_bytes(im.fp.read(2), "big")
            if kind == b"\xda":  # start of scan: how many components it holds
                return im.fp.read(1) != bytes([len(im.layer)])
            im.fp.seek(length - 2, 1)
        return True
    except OSError:
        return True
    finally:
        im.fp.seek(here)


@functools.cache
def _malloc_trim():
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    except (OSError, TypeError):
        return None


def release_memory() -> None:
    """Hand the memory freed back to the system now (glibc's ``malloc_trim``; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _Releases:
    """glibc keeps what a thread frees in that thread's arena, where the other threads cannot use it:
    RSS grew with -j (6 9440x9440 LA PNGs with -j 6 took 3.9 GB, one at a time 0.9 GB). Once the
    images decoded since the last time have taken ``every`` bytes, the freed memory is handed back:
    RSS stays within the budget plus ``every``, and the pages are faulted in again only that often
    (handing back after each 12-megapixel PNG cost 5% of its decoding; this 1%)."""

    def __init__(self, every: int):
        self.every, self.since = every, 0
        self._lock = threading.Lock()

    def decoded(self, n: int) -> None:
        with self._lock:
            self.since += n
            if self.since < self.every:
                return
            self.since = 0
        release_memory()


RELEASES = _Releases(512 << 20)
