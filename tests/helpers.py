"""Images the tests build (not a test file, and not fixtures: plain functions to import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rgb(w: int, h: int, color=(200, 30, 60)) -> Image.Image:
    return Image.new("RGB", (w, h), color)


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def image_modes(folder: Path) -> dict[str, tuple[int, int, int]]:
    """One small image file in ``folder`` for every pixel mode and format a decoder must handle:
    ``{file name: RGB expected at the centre of the network input}``."""
    out = {}
    red = rgb(64, 48, (255, 0, 0))
    red.convert("L").save(folder / "gray.png")
    out["gray.png"] = (76, 76, 76)
    la = Image.new("LA", (64, 48), (0, 0))
    la.save(folder / "la.png")
    out["la.png"] = (255, 255, 255)  # fully transparent -> white background
    rgba = Image.new("RGBA", (64, 48), (0, 0, 255, 0))
    rgba.save(folder / "rgba.png")
    out["rgba.png"] = (255, 255, 255)
    half = Image.new("RGBA", (64, 48), (0, 0, 0, 128))
    half.save(folder / "half.png")
    out["half.png"] = (127, 127, 127)
    pal = red.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.save(folder / "palette.png")
    out["palette.png"] = (255, 0, 0)
    ptrans = Image.new("P", (64, 48), 0)
    ptrans.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    ptrans.info["transparency"] = 0
    ptrans.save(folder / "ptrans.png", transparency=0)
    out["ptrans.png"] = (255, 255, 255)
    rgb(64, 48, (0, 255, 255)).convert("CMYK").save(folder / "cmyk.jpg", quality=100)
    out["cmyk.jpg"] = (0, 255, 255)
    Image.fromarray(np.full((48, 64), 65535, np.uint16)).save(folder / "sixteen.png")
    out["sixteen.png"] = (255, 255, 255)
    Image.fromarray(np.full((48, 64), 32896, np.uint16)).save(folder / "sixteen_mid.tif")
    out["sixteen_mid.tif"] = (128, 128, 128)
    rgb(64, 48, (255, 255, 255)).convert("1").save(folder / "bilevel.bmp")
    out["bilevel.bmp"] = (255, 255, 255)
    frames = [rgb(64, 48, (255, 0, 0)), rgb(64, 48, (0, 0, 255))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["anim.gif"] = (255, 0, 0)
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    out["pages.tif"] = (255, 0, 0)
    rgb(64, 48, (0, 128, 0)).save(folder / "lossless.webp", lossless=True)
    out["lossless.webp"] = (0, 128, 0)
    rgb(1, 1, (10, 20, 30)).save(folder / "one.png")
    out["one.png"] = (10, 20, 30)
    rgb(4000, 12, (200, 100, 50)).save(folder / "sliver.png")
    out["sliver.png"] = (200, 100, 50)
    return out
