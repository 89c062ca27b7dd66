"""Folder-scale behaviour: discovery, order, bad files survived, resume after a kill, exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import image_modes, noise_image, rgb

from xception_cli.cli import cli
from xception_cli.discovery import discover
from xception_cli.pipeline import PREFETCH, Decoder, Stats, classify_stream
from xception_cli.preprocess import ImageError, load_image


def fake_infer(batch):
    """A stand-in model: the 'probability' of class i encodes the image's mean pixel."""
    out = np.zeros((len(batch), 1000), np.float32)
    for row, x in zip(out, batch):
        row[int((x.mean() + 1) * 499.5)] = 1.0
    return out


# ---------------------------------------------------------------------------------------------
# discovery


def test_discovery_sorted_recursive_filtered(tmp_path):
    for rel in ["b.jpg", "a.PNG", "sub/c.JpEg", "sub/deeper/d.webp", "notes.txt", ".hidden.jpg",
                ".cache/e.jpg", "sub/f.tiff", "g.BMP", "h.gif", "i.tif"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    found = discover([str(tmp_path)])
    rel = [os.path.relpath(p, tmp_path) for p in found.paths]
    assert rel == ["a.PNG", "b.jpg", "g.BMP", "h.gif", "i.tif", "sub/c.JpEg", "sub/deeper/d.webp", "sub/f.tiff"]
    assert found.paths[0] == os.path.join(str(tmp_path), "a.PNG")  # as found under the given folder


def test_discovery_deduplicates_and_keeps_argument_order(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    found = discover([str(tmp_path / "b.jpg"), str(tmp_path), str(tmp_path / "a.jpg")])
    assert found.paths == [str(tmp_path / "b.jpg"), str(tmp_path / "a.jpg")]


def test_symlink_loops_are_safe(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    os.symlink(tmp_path / "sub", tmp_path / "again")
    found = discover([str(tmp_path)])
    assert [os.path.basename(p) for p in found.paths] == ["a.jpg"]


def test_broken_symlink_is_kept_for_its_error(tmp_path):
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    assert discover([str(tmp_path)]).paths == [str(tmp_path / "dangling.jpg")]
    with pytest.raises(ImageError, match="broken symbolic link"):
        load_image(tmp_path / "dangling.jpg")


# ---------------------------------------------------------------------------------------------
# the streaming pipeline


@pytest.mark.parametrize("batch_size, workers", [(1, 1), (3, 2), (4, 8), (64, 3)])
def test_order_preserved_across_batches_and_workers(tmp_path, batch_size, workers):
    paths = []
    for i in range(23):
        p = tmp_path / f"{i:02d}.png"
        if i in (4, 11):
            p.write_text("broken")
        else:
            # sizes differ wildly so decoding times differ and threads finish out of order
            side = 40 if i % 3 else 900
            rgb(side, side, (i * 10, i * 10, i * 10)).save(p)
        paths.append(str(p))
    stats = Stats()
    batches = list(classify_stream(((p, p) for p in paths), fake_infer, k=1, batch_size=batch_size,
                                   workers=workers, stats=stats))
    records = [r for b in batches for r in b]
    assert [r.path for r in records] == paths
    assert [r.ok for r in records] == [i not in (4, 11) for i in range(23)]
    for i, r in enumerate(records):
        if r.ok:  # each record carries its own image's result, not a neighbour's
            assert r.predictions[0].index == int((i * 10 / 127.5) * 499.5)
    assert all(sum(r.ok for r in b) <= batch_size for b in batches)
    assert (stats.classified, stats.failed) == (21, 2)


def test_the_infer_callable_gets_floats_and_an_engine_gets_pixels(tmp_path):
    """A plain callable (a mock included) is fed float32 in [-1, 1]; an object whose class has
    ``infer_pixels`` (the Engine) gets the decoded uint8 pixels."""
    from unittest import mock

    p = tmp_path / "grey.png"
    rgb(64, 64, (51, 51, 51)).save(p)
    fed = mock.Mock(side_effect=lambda x: np.tile(np.eye(1000, dtype=np.float32)[:1], (len(x), 1)))
    list(classify_stream([(str(p), str(p))], fed, k=1))
    (batch,), _ = fed.call_args
    assert batch.dtype == np.float32 and abs(float(batch.max()) - (51 / 127.5 - 1)) < 1e-6

    class PixelEngine:
        def __init__(self):
            self.seen = []

        def infer_pixels(self, pixels):
            self.seen.append(pixels)
            return np.tile(np.eye(1000, dtype=np.float32)[:1], (len(pixels), 1))

        def __call__(self, x):
            raise AssertionError("floats given to an engine that takes pixels")

    engine = PixelEngine()
    (records,) = list(classify_stream([(str(p), str(p))], engine, k=1))
    assert records[0].ok and engine.seen[0].dtype == np.uint8 and int(engine.seen[0].max()) == 51


def test_memory_stays_bounded(tmp_path):
    """Decoding runs at most a fixed window ahead of the model, whatever the number of inputs."""
    rgb(50, 50).save(tmp_path / "a.png")
    pulled = []

    def items():
        for i in range(10_000):
            pulled.append(i)
            yield f"{i}", str(tmp_path / "a.png")

    stream = classify_stream(items(), fake_infer, batch_size=4, workers=2)
    next(stream)
    time.sleep(0.2)
    assert len(pulled) <= PREFETCH + 4 + 1  # the window, the batch just taken, one look-ahead
    next(stream)
    assert len(pulled) <= PREFETCH + 8 + 1
    stream.close()


def test_decoding_starts_before_the_model_is_ready(tmp_path):
    for i in range(6):
        noise_image(64, 64, seed=i).save(tmp_path / f"{i}.png")
    items = [(str(p), str(p)) for p in sorted(tmp_path.glob("*.png"))]
    with Decoder(items, workers=2) as decoder:
        time.sleep(0.5)  # e.g. TensorFlow importing
        records = [r for b in classify_stream(decoder, fake_infer, batch_size=4) for r in b]
        assert decoder.wait_s < 0.05  # everything was decoded before the model asked
    assert [r.path for r in records] == [name for name, _ in items] and all(r.ok for r in records)


def test_file_that_disappears_mid_run(tmp_path):
    paths = []
    for i in range(12):
        noise_image(32, 32, seed=i).save(tmp_path / f"{i:02d}.png")
        paths.append(str(tmp_path / f"{i:02d}.png"))
    decoder = Decoder(((p, p) for p in paths), workers=1, window=2)  # decodes just ahead
    stream = classify_stream(decoder, fake_infer, batch_size=1)
    first = next(stream)
    os.unlink(paths[-1])  # discovered, but gone by the time it is decoded
    records = first + [r for b in stream for r in b]
    assert [r.path for r in records] == paths
    assert records[-1].error.startswith("file not found")
    assert all(r.ok for r in records[:-1])


# ---------------------------------------------------------------------------------------------
# every bad file survived, every odd-but-valid file classified (through the CLI)


def _png_header_only(path: Path, width: int, height: int) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture
def messy_folder(tmp_path, samples):
    d = tmp_path / "messy"
    d.mkdir()
    bad = {}
    (d / "zero.jpg").write_bytes(b"")
    bad["zero.jpg"] = "empty file (0 bytes)"
    noise_image(600, 400).save(d / "full.jpg", quality=90)
    data = (d / "full.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    bad["truncated.jpg"] = "truncated"
    (d / "text.png").write_text("hello, I am not a picture\n")
    bad["text.png"] = "not a recognised image format"
    (d / "vector.png").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    bad["vector.png"] = "not a recognised image format"
    (d / "secret.jpg").write_bytes(samples[0].read_bytes())
    os.chmod(d / "secret.jpg", 0)
    bad["secret.jpg"] = "permission denied"
    os.symlink(d / "gone.jpg", d / "dangling.jpg")
    bad["dangling.jpg"] = "broken symbolic link"
    _png_header_only(d / "bomb.png", 30_000, 30_000)
    bad["bomb.png"] = "exceeds the decompression-bomb limit"

    good = []
    for name in image_modes(d):
        good.append(name)
    (d / "UPPER.JPG").write_bytes(samples[0].read_bytes())
    (d / "café ☕ фото.jpg").write_bytes(samples[-1].read_bytes())
    good += ["UPPER.JPG", "café ☕ фото.jpg", "full.jpg"]
    return d, bad, good


@pytest.fixture
def deny_when_root(monkeypatch):
    """As root, chmod 000 does not stop reads: make 'secret.jpg' unreadable the way it is for users."""
    if os.geteuid() != 0:
        return
    import xception_cli.preprocess as P

    real_open = P.Image.open

    def guarded(fp, *a, **kw):
        if str(fp).endswith("secret.jpg"):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(P.Image, "open", guarded)


def test_every_bad_file_survived(messy_folder, weights_file, deny_when_root):
    d, bad, good = messy_folder
    r = CliRunner().invoke(cli, ["predict", str(d), "-f", "jsonl", "--weights", str(weights_file), "-b", "4"])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    records = {os.path.basename(x["path"]): x for x in map(json.loads, r.stdout.splitlines())}
    assert set(records) == set(bad) | set(good)
    for name, reason in bad.items():
        assert reason in records[name].get("error", ""), (name, records[name])
        assert f"warning: {d / name}: " in r.stderr
    for name in good:
        assert len(records[name].get("predictions", [])) == 5, (name, records[name])
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(bad)
    assert r.stderr.strip().splitlines()[-1].startswith(f"classified {len(good)}, failed {len(bad)} in ")


# ---------------------------------------------------------------------------------------------
# resume, kill, interrupt


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("folder")
    for i in range(40):
        noise_image(64, 48, seed=i).save(d / f"img_{i:03d}.png")
    return d


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "xception_cli", *map(str, args)]


def _wait_for_lines(path: Path, n: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"finished before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("no output in time")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_killed_run_then_resume_records_every_file_once(small_folder, weights_file, tmp_path, fmt):
    out = tmp_path / f"labels.{fmt}"
    (small_folder / "zz_broken.png").write_text("broken")  # a failure: retried on resume
    try:
        proc = subprocess.Popen(_cli("predict", small_folder, "-o", out, "-b", 2, "--weights", weights_file),
                                stderr=subprocess.PIPE, text=True)
        _wait_for_lines(out, 4, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if fmt == "csv":  # rows are flushed per batch: whatever is there parses
            done_before = {line.split(",")[0] for line in out.read_text().splitlines()[1:]}
        else:
            done_before = {json.loads(line)["path"] for line in out.read_text().splitlines()}
        assert 0 < len(done_before) < 41
        r = subprocess.run(_cli("predict", small_folder, "-o", out, "--resume", "--weights", weights_file),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, r.stderr  # the broken file still fails
        assert "already classified" in r.stderr
    finally:
        (small_folder / "zz_broken.png").unlink()
    if fmt == "jsonl":
        paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    else:
        import csv

        rows = list(csv.DictReader(out.open()))
        paths = [row["path"] for row in rows if row["rank"] in ("1", "")]
    expected = sorted([str(small_folder / f"img_{i:03d}.png") for i in range(40)]
                      + [str(small_folder / "zz_broken.png")])
    assert sorted(paths) == expected  # each exactly once


def test_resume_retries_failures_and_skips_successes(tmp_path, weights_file):
    d = tmp_path / "d"
    d.mkdir()
    noise_image(64, 64, seed=1).save(d / "a.png")
    (d / "b.png").write_text("not yet")
    out = tmp_path / "out.jsonl"
    r1 = CliRunner().invoke(cli, ["predict", str(d), "-o", str(out), "--weights", str(weights_file)])
    assert r1.exit_code == 1
    noise_image(64, 64, seed=2).save(d / "b.png")  # fixed by the user
    r2 = CliRunner().invoke(cli, ["predict", str(d), "-o", str(out), "--resume", "--weights", str(weights_file)])
    assert r2.exit_code == 0, r2.output
    assert "resume: 1 already classified" in r2.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(os.path.basename(x["path"]), "predictions" in x) for x in records] == [("a.png", True), ("b.png", True)]
    r3 = CliRunner().invoke(cli, ["predict", str(d), "-o", str(out), "--resume", "--weights", str(weights_file)])
    assert r3.exit_code == 0 and out.read_text().count("\n") == 2


def test_resume_needs_output_and_a_line_format(tmp_path, weights_file, samples):
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--resume", "-f", "jsonl"])
    assert r.exit_code == 2 and "--resume needs -o FILE" in r.stderr
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--resume", "-o", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "--resume works with jsonl, csv, npz or parquet output, not json" in r.stderr


def test_ctrl_c_exits_130_keeping_completed_records(small_folder, weights_file, tmp_path):
    out = tmp_path / "labels.jsonl"
    proc = subprocess.Popen(_cli("predict", small_folder, "-o", out, "-b", 2, "--weights", weights_file),
                            stderr=subprocess.PIPE, text=True)
    _wait_for_lines(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: classified" in err and "Traceback" not in err
    lines = out.read_text().splitlines()
    assert 2 <= len(lines) < 40
    assert all("predictions" in json.loads(line) for line in lines)


def test_exit_0_when_everything_is_classified(small_folder, weights_file):
    r = CliRunner().invoke(cli, ["predict", str(small_folder), "-f", "csv", "--weights", str(weights_file), "-j", "3"])
    assert r.exit_code == 0
    assert r.stderr.strip().splitlines()[-1].startswith("classified 40, failed 0 in ")


def test_bfloat16_agrees_with_float32(samples, weights_file):
    from xception_cli import Classifier

    a = Classifier(weights=str(weights_file)).predict(samples)
    b = Classifier(weights=str(weights_file), precision="bfloat16").predict(samples)
    for x, y in zip(a, b):
        pa = {p.index: p.probability for p in x.predictions}
        assert x.predictions[0].index in {p.index for p in y.predictions[:2]}
        assert abs(pa[x.predictions[0].index] - next(
            (p.probability for p in y.predictions if p.index == x.predictions[0].index), 0)) < 0.1


def test_pil_images_go_through_the_same_pipeline():
    """Images handed over as PIL objects and arrays go through the same pipeline."""
    ims = [noise_image(80, 60, seed=i) for i in range(3)]
    records = [r for b in classify_stream([(f"im{i}", im) for i, im in enumerate(ims)], fake_infer, k=1)
               for r in b]
    assert [r.path for r in records] == ["im0", "im1", "im2"] and all(r.ok for r in records)
