"""The benchmarks run from a bare clone: nothing in the repository reads the developers' shared
folder beside it, and the corpus generator makes valid, deterministic JPEGs of the size asked."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = "shared"  # the developers' folder beside the repository, which a user's clone lacks
FORBIDDEN = (f"../{SHARED}", f"{SHARED}/bench", f"{SHARED}/samples")


def tracked_files() -> list[Path]:
    """Every file git tracks here (a checkout without git: every file but git's and generated ones)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "bench-out", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_nothing_tracked_reads_beside_the_repository():
    me = Path(__file__).resolve()
    files = [p for p in tracked_files() if p.resolve() != me and p.is_file()]
    assert len(files) > 20  # the listing worked
    hits = []
    for p in files:
        text = p.read_bytes().decode("utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if any(s in line for s in FORBIDDEN):
                hits.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not hits, "files that point outside the repository:\n" + "\n".join(hits)


def load_make_corpus():
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "benchmarks" / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_corpus_writes_valid_jpegs_of_the_size_asked(tmp_path):
    make_corpus = load_make_corpus()
    paths = make_corpus.make_corpus(tmp_path / "a", 4, size=(160, 120), seed=3)
    assert [p.name for p in paths] == [f"photo-{i:04d}.jpg" for i in range(4)]
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (160, 120) and im.mode == "RGB"
            im.load()  # the whole file decodes
            assert im.getexif().get(0x0112) == (6 if i == 3 else None)  # every fourth photo is turned
    assert len({p.read_bytes() for p in paths}) == 4  # four different photos
    again = make_corpus.make_corpus(tmp_path / "b", 2, size=(160, 120), seed=3)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths[:2]]  # deterministic, prefix-stable
    other = make_corpus.make_corpus(tmp_path / "c", 1, size=(160, 120), seed=4)
    assert other[0].read_bytes() != paths[0].read_bytes()


def test_make_corpus_command_line(tmp_path):
    script = str(ROOT / "benchmarks" / "make_corpus.py")
    r = subprocess.run([sys.executable, script, str(tmp_path / "c"), "--n", "1", "--size", "64x48"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "c" / "photo-0000.jpg") as im:
        assert im.size == (64, 48)
    assert (tmp_path / "c" / "corpus.json").exists()
    bad = subprocess.run([sys.executable, script, str(tmp_path / "d"), "--size", "big"], capture_output=True, text=True)
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr


@pytest.mark.parametrize("name", ["one_photo.py", "folder.py", "model_call.py", "int8.py", "embed.py",
                                  "ray_path.py", "train.py", "runtime_options.py", "explain.py",
                                  "startup.py"])
def test_benchmark_scripts_start(name):
    """Each script's imports and options hold together (--help stops before any work)."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr
