"""Heat maps as pictures: perceptually uniform colour maps, computed here, and a map laid over a photo.

No matplotlib: a colour map is a smooth path through CIELAB (a Catmull-Rom spline) through five
colours of the map it is named after (at 0, 1/4, 1/2, 3/4 and 1), its lightness rising all the
way; between two of them the path is cut into steps of equal colour difference (CIE76 Delta E),
then converted to sRGB (D65). Equal steps of value look like equal steps of colour, and the order
reads in grayscale too.

``overlay(photo, cam, box)`` upsamples a class activation map (values in ``[0, 1]``) over the part
of the photo the network saw (``box``), colours it and blends it with the photo; what lies outside
the box (the edges a centre crop cut off) is dimmed.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np

# The sRGB colours each map passes through, at 0, 1/4, 1/2, 3/4 and 1 (matplotlib's viridis and magma there).
ANCHORS = {
    "viridis": ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"),
    "magma": ("#000004", "#51127c", "#b73779", "#fc8961", "#fcfdbf"),
}
COLORMAPS = tuple(ANCHORS)
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}
OUTSIDE = 0.45  # what is left of the photo's brightness where the network did not look (a centre crop's edges)

_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65
_XYZ_TO_RGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
_EPS = 6 / 29


def srgb_to_lab(rgb) -> np.ndarray:
    """sRGB in ``[0, 1]`` (``(..., 3)``) to CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.linalg.inv(_XYZ_TO_RGB).T / _WHITE
    f = np.where(xyz > _EPS ** 3, np.cbrt(xyz), xyz / (3 * _EPS ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab) -> np.ndarray:
    """CIELAB (D65) to sRGB in ``[0, 1]``, clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > _EPS, f ** 3, 3 * _EPS ** 2 * (f - 4 / 29)) * _WHITE
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def _hex(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0


@cache
def colormap_lab(name: str, steps: int = 256) -> np.ndarray:
    """``(steps, 3)`` CIELAB colours of the map ``name``: through its anchors at equal intervals,
    and between two anchors in steps of equal colour difference (CIE76)."""
    if name not in ANCHORS:
        raise ValueError(f"colour map must be one of {', '.join(COLORMAPS)}; got {name!r}")
    points = srgb_to_lab(np.stack([_hex(c) for c in ANCHORS[name]]))
    ends = np.concatenate([[2 * points[0] - points[1]], points, [2 * points[-1] - points[-2]]])
    segments = len(points) - 1
    t = np.linspace(0.0, 1.0, 1025)[:, None]
    u = np.linspace(0.0, segments, steps)  # where each entry lies, in segments
    out = np.empty((steps, 3))
    for i in range(segments):
        curve = _catmull_rom(*ends[i:i + 4], t)
        length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
        here = (u >= i) & ((u < i + 1) | (i == segments - 1))
        at = (u[here] - i) * length[-1]
        out[here] = np.stack([np.interp(at, length, curve[:, c]) for c in range(3)], axis=1)
    return out


def _catmull_rom(p0, p1, p2, p3, t):
    """The uniform Catmull-Rom segment from ``p1`` to ``p2`` at ``t`` in ``[0, 1)``."""
    return 0.5 * ((2 * p1) + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                  + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)


@cache
def colormap(name: str = "viridis") -> np.ndarray:
    """The 256-entry lookup table of ``name`` (``COLORMAPS``) as ``uint8`` sRGB ``(256, 3)``."""
    return np.clip(np.rint(lab_to_srgb(colormap_lab(name)) * 255), 0, 255).astype(np.uint8)


def _levels(values: np.ndarray) -> np.ndarray:
    """Values in ``[0, 1]`` as the map's 256 entries (``uint8``)."""
    return np.rint(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.uint8)


def pixel_box(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box given as fractions of the photo (left, top, right, bottom) in whole pixels of ``size``."""
    w, h = size
    left, top = round(box[0] * w), round(box[1] * h)
    right, bottom = max(left + 1, round(box[2] * w)), max(top + 1, round(box[3] * h))
    return left, top, min(right, w), min(bottom, h)


def overlay(photo, cam: np.ndarray, box=(0.0, 0.0, 1.0, 1.0), alpha: float = 0.5, cmap: str = "viridis"):
    """``photo`` (RGB) with ``cam`` (``(h, w)`` in ``[0, 1]``) coloured over ``box`` (fractions of
    the photo: the part the network saw), blended ``alpha`` of the map to ``1 - alpha`` of the
    photo; outside the box the photo is dimmed. The map is upsampled bilinearly. A PIL image."""
    from PIL import Image

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    photo = photo.convert("RGB")
    left, top, right, bottom = pixel_box(box, photo.size)
    heat = Image.fromarray(np.asarray(cam, dtype=np.float32), mode="F").resize(
        (right - left, bottom - top), Image.Resampling.BILINEAR)
    colours = Image.fromarray(_levels(np.asarray(heat)), mode="L")
    colours.putpalette(colormap(cmap).tobytes())  # the map's colours, looked up in C
    colours = colours.convert("RGB")
    seen = Image.blend(photo.crop((left, top, right, bottom)), colours, alpha)
    if (left, top, right, bottom) == (0, 0, *photo.size):
        return seen
    out = photo.point([round(v * OUTSIDE) for v in range(256)] * 3)
    out.paste(seen, (left, top))
    return out


def encode(image, fmt: str = "png") -> bytes:
    """The image as file bytes: PNG (``png_bytes``) or JPEG (quality 90)."""
    if fmt == "png":
        return png_bytes(np.asarray(image.convert("RGB")))
    if fmt == "jpg":
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        return buf.getvalue()
    raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}; got {fmt!r}")


def png_bytes(rgb: np.ndarray) -> bytes:
    """An ``(h, w, 3)`` uint8 image as a PNG file: 8-bit RGB, every row filtered "Up" (its
    difference from the row above), deflated with Huffman codes only (on a photo's differences
    string matching finds little) — smaller than Pillow's level-1 PNG of a photo in a third of
    its time; a flat image still takes at most about a bit a byte."""
    import struct
    import zlib

    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = a.shape
    rows = np.empty((h, 1 + 3 * w), np.uint8)
    rows[:, 0] = 2  # filter type Up
    rows[:, 1:] = a.reshape(h, -1)
    rows[1:, 1:] -= a[:-1].reshape(h - 1, 3 * w)  # modulo 256, as the filter is defined

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, filtering 0, no interlace
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    data = deflate.compress(rows.tobytes()) + deflate.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def encode_map(cam: np.ndarray) -> bytes:
    """A map as a ``.npy`` file's bytes (float32)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(cam, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()
