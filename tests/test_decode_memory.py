"""What decoding an image holds, counted per format, and given back (red-team review 18, items 4, 5,
11 and 15).

The decoding threads share a 1 GiB budget; each image reserves what its decoder really holds
(``decode_budget.working_bytes``), measured here as the peak RSS of decoding it, and the freed
memory is handed back to the system, so the peak does not grow with ``-j``. Inputs are opened only
as the raster formats the tool reads: a PostScript file named ``.jpg`` never reaches Ghostscript.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_bounded_reading import error_lines, run

from xception_cli.decode_budget import WORKING_BYTES_PER_PIXEL, release_memory
from xception_cli.errors import ImageError
from xception_cli.preprocess import load_image, measured_image, working_bytes

HWM = Path("/proc/self/clear_refs")
linux_only = pytest.mark.skipif(not HWM.exists() or not sys.platform.startswith("linux"),
                                reason="peak RSS reset through /proc/self/clear_refs (Linux)")


def _status(key: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key))
    return int(line.split()[1]) * 1024


def peak_of(fn) -> int:
    """Bytes the resident set grew by at its peak while ``fn`` ran (this process, Linux)."""
    release_memory()  # what earlier tests freed is not there to be reused
    HWM.write_text("5")  # the peak (VmHWM) starts again from now
    base = _status("VmRSS:")
    fn()
    return _status("VmHWM:") - base


def reserved(path, draft_to=341) -> int:
    im = measured_image(path, draft_to=draft_to)
    with im:
        return working_bytes(im)


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).resize((2400, 2400))


FORMATS = {  # name: how the file is written from a 2400x2400 RGB photo
    "gray-alpha.png": lambda im, p: im.convert("LA").save(p, compress_level=1),
    "rgba-deflate.tif": lambda im, p: im.convert("RGBA").save(p, compression="tiff_adobe_deflate"),
    "palette.gif": lambda im, p: im.convert("P").save(p),
    "sixteen.png": lambda im, p: Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(p),
    "lossless.webp": lambda im, p: im.save(p, lossless=True, method=0),
    "progressive-cmyk.jpg": lambda im, p: im.convert("CMYK").save(p, progressive=True),
    "baseline-cmyk.jpg": lambda im, p: im.convert("CMYK").save(p),
}


# Each file decoded in a process of its own: what a long test session's other threads left in the
# allocator (arenas, fragments) is not there to blur the peak.
CHILD = """
import json, sys
import test_decode_memory as t
from xception_cli.preprocess import load_image
from xception_cli.train import _augmented
path, how = sys.argv[1], load_image if sys.argv[2] == "load" else _augmented
how(path)  # once first: the format's plugin and its libraries loaded, not counted as decoding
print(json.dumps([t.peak_of(lambda: how(path)), t.reserved(path)]))
"""


def peak_in_child(path, how: str = "load") -> tuple[int, int]:
    """``(peak, reserved)`` bytes of decoding ``path`` (``load``: as predict, ``augment``: as train
    --augment) in a fresh process."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), how], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return tuple(json.loads(r.stdout.splitlines()[-1]))


@linux_only
def test_each_format_reserves_at_least_what_its_decoding_holds(photo, tmp_path):
    peaks, needs = {}, {}
    for name, write in FORMATS.items():
        path = tmp_path / name
        write(photo, path)
        peaks[name], needs[name] = peak_in_child(path)
    over = {n: f"{peaks[n] / 2**20:.0f} MiB held, {needs[n] / 2**20:.0f} reserved" for n in FORMATS
            if peaks[n] > needs[n]}
    assert not over
    pixels = 2400 * 2400
    # a lossless WebP takes twice what other formats do: the common rate would not cover it
    assert peaks["lossless.webp"] > pixels * WORKING_BYTES_PER_PIXEL
    # libjpeg keeps a progressive file's coefficients at full size, whatever the reduced scale decoded
    assert peaks["progressive-cmyk.jpg"] > 6 * pixels > needs["baseline-cmyk.jpg"]


def test_progressive_jpeg_coefficients_are_counted_at_full_size(photo, tmp_path):
    """4:2:0 at 1/2 scale: Y 200x150 blocks, Cb and Cr 100x75, 128 bytes a block."""
    photo.resize((1600, 1200)).save(tmp_path / "p.jpg", progressive=True, subsampling=2)
    photo.resize((1600, 1200)).save(tmp_path / "b.jpg", subsampling=2)
    drafted = reserved(tmp_path / "b.jpg")
    assert reserved(tmp_path / "p.jpg") - drafted == (200 * 150 + 2 * 100 * 75) * 128
    assert drafted == 800 * 600 * WORKING_BYTES_PER_PIXEL + (16 << 20)


def test_hostile_images_decode_within_the_budget_whatever_j(tmp_path):
    """Four 6000x6000 progressive CMYK JPEGs (560 KB) and four gray+alpha PNGs (84 KB), -j 8: 2.1 GB
    (the budget counted the JPEGs at their reduced size, and each thread's glibc arena kept what it
    had freed); a 38-byte 16383x3500 lossless WebP decodes in 1.0 GB, so it is refused."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("CMYK", (6000, 6000), (10, 200, 30, 40)).save(folder / "p0.jpg", progressive=True)
    Image.new("LA", (6000, 6000), (120, 200)).save(folder / "l0.png")
    for i in range(1, 4):
        os.link(folder / "p0.jpg", folder / f"p{i}.jpg")
        os.link(folder / "l0.png", folder / f"l{i}.png")
    webp = folder / "wide.webp"
    Image.new("RGB", (16383, 3500), (120, 200, 10)).save(webp, lossless=True, method=0)
    assert webp.stat().st_size < 1000
    code, peak, out, err = run(tmp_path, "predict", str(folder), "-j", "8", "--weights", "none", "-f", "jsonl")
    assert code == 1, err
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert sorted(n for n, r in records.items() if "predictions" in r) == [*(f"l{i}.png" for i in range(4)),
                                                                            *(f"p{i}.jpg" for i in range(4))]
    message = "16383x3500 WEBP takes 1,055 MiB to decode, over the 1,024 MiB that all decoding may hold at once"
    assert records["wide.webp"]["error"] == message
    assert error_lines(err) == [f"warning: {webp}: {message}"]
    assert peak < 1400, f"peak {peak:.0f} MiB (2.1 GB before)"


def eps(path) -> Path:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, "EPS")
    return path


def test_postscript_named_jpg_never_reaches_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    started = []
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")  # as where Ghostscript is installed
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail(f"started {a}"))
    fake = eps(tmp_path / "photo.jpg")
    for source in (fake, fake.read_bytes()):
        with pytest.raises(ImageError, match=r"^not a recognised image format \(is the extension wrong\?\)$"):
            load_image(source)
    assert not started


def test_postscript_named_jpg_is_an_error_record(tmp_path):
    fake = eps(tmp_path / "photo.jpg")
    code, _, out, err = run(tmp_path, "predict", str(fake), "--weights", "none", "-f", "jsonl")
    assert code == 1
    message = "not a recognised image format (is the extension wrong?)"
    assert {k: v for k, v in json.loads(out).items() if k != "file_id"} == {"path": str(fake), "error": message}
    assert error_lines(err) == [f"warning: {fake}: {message}"]


@linux_only
def test_augmenting_a_big_photo_makes_its_copies_small(tmp_path):
    """train --augment made three full-size RGB copies of each photo, outside the limits and budget."""
    from xception_cli.train import _augmented

    big = tmp_path / "la.png"
    Image.new("LA", (4000, 3000), (120, 200)).save(big)
    copies = _augmented(str(big))
    assert [(c.mode, c.size) for c in copies] == [("RGB", (455, 341))] * 3
    held, allowed = peak_in_child(big, "augment")  # in a fresh process, as the formats' peaks are
    assert held <= allowed, f"{held / 2**20:.0f} MiB"
    with pytest.raises(ImageError, match="not a recognised image format"):
        _augmented(str(eps(tmp_path / "fake.jpg")))


def test_a_photo_that_cannot_be_augmented_is_left_out_whole(tmp_path, samples):
    from xception_cli.train import features

    fake = eps(tmp_path / "fake.jpg")  # read once as a photo (the stream below says so), then not
    items = [(str(samples[0]), 0), (str(fake), 1), (str(samples[1]), 1)]
    embedder = SimpleNamespace(
        stream=lambda pairs: [[SimpleNamespace(error=None, embedding=np.ones(4, np.float32)) for _ in pairs]],
        records=lambda ims: [SimpleNamespace(embedding=np.full(4, 2, np.float32)) for _ in ims])
    logged = []
    x, y, skipped = features(embedder, items, logged.append, augment=True)
    assert x.shape == (8, 4) and y.tolist() == [0] * 4 + [1] * 4
    assert skipped == [(str(fake), "not a recognised image format (is the extension wrong?)")]
    assert logged == [f"warning: {fake}: not a recognised image format (is the extension wrong?) (skipped)"]


def test_workers_are_at_most_16():
    from xception_cli.cli import cli

    r = CliRunner().invoke(cli, ["predict", "-j", "17", "x.jpg"])
    assert r.exit_code == 2 and "17 is not in the range 1<=x<=16" in r.output
