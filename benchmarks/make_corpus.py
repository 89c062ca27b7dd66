"""Make a folder of photo-like 12-megapixel JPEGs for the benchmarks, deterministic by seed.

usage: python benchmarks/make_corpus.py DIR [--n 64] [--size 4000x3000] [--seed 0] [--quality 90]

Each photo is a random crop of one of the sample photos in tests/data (mirrored half the time),
resized to --size with bicubic interpolation, plus sensor-like Gaussian noise on the brightness
(sigma 5 grey levels, so the file is not trivially compressible: about 3 MB at quality 90, like a
phone's), saved as a baseline JPEG with 4:2:0 chroma subsampling. Every fourth photo carries an
EXIF orientation tag (6, 8, 3 in turn: turned 90, 270, 180 degrees to show), as a camera writes
it; the pixels are stored at --size. Photo i depends only on (--seed, i), so the
first 16 photos of --n 64 are the photos of --n 16. corpus.json, written last, records the options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "tests" / "data").glob("*.jpg"))
ORIENTATIONS = (6, 8, 3)  # EXIF 0x0112: the photo must be turned 90 (6), 270 (8) or 180 (3) degrees to show
NOISE_SIGMA = 5.0


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 4000x3000, not {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, not {text!r}")
    return w, h


def photo(i: int, size: tuple[int, int], seed: int, noise: np.ndarray, sources: list[Image.Image]) -> Image.Image:
    """Photo ``i`` of the corpus: a crop of a sample, resized, with the shared noise field shifted."""
    rng = np.random.default_rng([seed, i])
    src = sources[int(rng.integers(len(sources)))]
    w, h = src.size
    aspect = size[0] / size[1]
    scale = rng.uniform(0.55, 1.0)  # the crop keeps 55-100% of the sample's largest crop of this aspect
    cw = min(w, h * aspect) * scale
    ch = cw / aspect
    left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    im = src.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    shift = (int(rng.integers(size[1])), int(rng.integers(size[0])))
    pixels = np.asarray(im, np.int16) + np.roll(noise, shift, axis=(0, 1))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_corpus(folder: str | Path, n: int, size: tuple[int, int] = (4000, 3000), seed: int = 0,
                quality: int = 90) -> list[Path]:
    """Write photo-0000.jpg ... into ``folder`` (made if missing); the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.json").unlink(missing_ok=True)
    sources = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in SAMPLES]
    if not sources:
        raise SystemExit("make_corpus: no sample photos in tests/data/*.jpg")
    # One noise field per corpus, shifted per photo: drawing 36 M normals per photo would cost more than the rest.
    noise = np.random.default_rng(seed).normal(0, NOISE_SIGMA, (size[1], size[0], 1)).round().astype(np.int16)
    paths = []
    for i in range(n):
        im = photo(i, size, seed, noise, sources)
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "xception-cli", "benchmarks/make_corpus.py"  # Make, Model
        if i % 4 == 3:
            exif[0x0112] = ORIENTATIONS[(i // 4) % len(ORIENTATIONS)]
        path = folder / f"photo-{i:04d}.jpg"
        partial = path.with_suffix(".partial")
        im.save(partial, "JPEG", quality=quality, subsampling="4:2:0", exif=exif.tobytes())
        partial.replace(path)
        paths.append(path)
    (folder / "corpus.json").write_text(json.dumps(
        {"n": n, "size": list(size), "seed": seed, "quality": quality, "noise_sigma": NOISE_SIGMA}) + "\n")
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=64, help="how many photos (default 64)")
    ap.add_argument("--size", type=parse_size, default=(4000, 3000), help="WIDTHxHEIGHT (default 4000x3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality", type=int, default=90, choices=range(1, 96), metavar="1-95")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    paths = make_corpus(args.folder, args.n, args.size, args.seed, args.quality)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} JPEGs of {args.size[0]}x{args.size[1]} in {args.folder} "
          f"({total / len(paths) / 1e6:.2f} MB each on average)", file=sys.stderr)


if __name__ == "__main__":
    main()
