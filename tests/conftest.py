"""Shared fixtures: real sample photos, generated weights files, the reference model.

No test touches the network: weights are written here from seeded random weights in the
official file layout (see xception_cli.synthetic).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The compiled-network cache stays off (and out of ~/.cache) unless a test turns it on (test_cache.py).
os.environ.setdefault("XCEPTION_NO_CACHE", "1")

ROOT = Path(__file__).resolve().parents[1]
# Four real photos shipped with the tests (CC0 / public domain, see tests/data/LICENSES.md): the
# suite needs nothing outside the repository.
SAMPLES = sorted((Path(__file__).resolve().parent / "data").glob("*.jpg"))
assert len(SAMPLES) == 4, "tests/data/*.jpg (the sample photos) are missing from this checkout"


@pytest.fixture(scope="session")
def samples() -> list[Path]:
    return SAMPLES


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory, samples) -> Path:
    """Calibrated seeded weights with the top, in the official legacy .h5 layout."""
    from xception_cli.synthetic import make_weights_file

    return make_weights_file(tmp_path_factory.mktemp("weights") / "xception_test.h5", samples, seed=0)


@pytest.fixture(scope="session")
def reference_model(weights_file):
    """``keras.applications.Xception`` loading the same file: the oracle."""
    import keras

    return keras.applications.Xception(weights=str(weights_file))


@pytest.fixture(scope="session")
def engine(weights_file):
    from xception_cli.engine import get_engine

    return get_engine(weights=str(weights_file))


@pytest.fixture(scope="session")
def presized(tmp_path_factory, samples) -> Path:
    """The sample photos squashed to 299x299 and saved losslessly (PNG)."""
    d = tmp_path_factory.mktemp("presized")
    for p in samples:
        Image.open(p).convert("RGB").resize((299, 299), Image.Resampling.BICUBIC).save(d / f"{p.stem}.png")
    return d


def copies_of(samples, folder: Path) -> Path:
    """The sample photos copied into a new ``folder`` (one a test may change)."""
    folder.mkdir()
    for p in samples:
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


@pytest.fixture
def photos(tmp_path, samples) -> Path:
    return copies_of(samples, tmp_path / "imgs")


@pytest.fixture
def image_dir(tmp_path, samples) -> Path:
    return copies_of(samples, tmp_path / "photos")
