"""Weights resolution (env var, Keras cache, download) and loading, never touching the network."""

import io
import urllib.error

import numpy as np
import pytest
from click.testing import CliRunner

from xception_cli import weights as W
from xception_cli.cli import cli
from xception_cli.config import WeightsFile
from xception_cli.model import build_xception
from xception_cli.synthetic import write_legacy_h5
from xception_cli.weights import resolve as R


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("XCEPTION_WEIGHTS", raising=False)
    return home


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(R, "_urlopen", refuse)
    return calls


@pytest.fixture
def official_is(monkeypatch):
    """Pretend a given file is the official one (its md5 becomes the expected md5)."""

    def use(path):
        spec = WeightsFile("xception_weights_tf_dim_ordering_tf_kernels.h5", W.md5sum(path))
        monkeypatch.setattr(R, "official_file", lambda include_top=True: spec)
        return spec

    return use


def test_env_var_wins(keras_home, weights_file, monkeypatch, no_network):
    models = keras_home / "models"
    models.mkdir(parents=True)
    (models / "xception_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"cached")
    monkeypatch.setenv("XCEPTION_WEIGHTS", str(weights_file))
    assert W.resolve_weights("imagenet") == weights_file
    assert no_network == []


def test_env_var_missing_file(keras_home, tmp_path, monkeypatch):
    monkeypatch.setenv("XCEPTION_WEIGHTS", str(tmp_path / "nope.h5"))
    with pytest.raises(W.WeightsError, match=r"nope\.h5: weights file not found \(from \$XCEPTION_WEIGHTS\)"):
        W.resolve_weights("imagenet")


def test_cached_file_with_good_md5_is_used_offline(keras_home, weights_file, official_is, no_network):
    spec = official_is(weights_file)
    cached = keras_home / "models" / spec.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_file.read_bytes())
    assert W.resolve_weights("imagenet") == cached
    assert no_network == []


def test_default_cache_is_keras_home(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.keras_cache_dir() == tmp_path / ".keras" / "models"


def test_cached_file_with_bad_md5(keras_home, no_network):
    cached = keras_home / "models" / W.WEIGHTS_TOP.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the real weights")
    with pytest.raises(W.WeightsError) as e:
        W.resolve_weights("imagenet")
    msg = str(e.value)
    assert str(cached) in msg and "expected 0a58e3b7378bc2990ea3b43d5981f1f6" in msg and "corrupt" in msg
    assert "\n" not in msg
    assert no_network == []


def test_failed_download_says_offline(keras_home, no_network):
    with pytest.raises(W.WeightsError) as e:
        W.resolve_weights("imagenet")
    msg = str(e.value)
    assert no_network == [W.WEIGHTS_TOP.url]
    assert W.WEIGHTS_TOP.url in msg and "offline" in msg and "--weights" in msg and "XCEPTION_WEIGHTS" in msg
    assert not list((keras_home / "models").glob("*")), "no partial file may be left in the cache"


class FakeResponse(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_download_checks_md5_and_fills_the_keras_cache(keras_home, weights_file, official_is, monkeypatch):
    spec = official_is(weights_file)
    data = weights_file.read_bytes()
    seen = []
    monkeypatch.setattr(R, "_urlopen", lambda url, timeout: seen.append(url) or FakeResponse(data))
    progress = []
    path = W.resolve_weights("imagenet", progress=lambda done, total: progress.append((done, total)))
    assert path == keras_home / "models" / spec.filename
    assert path.read_bytes() == data
    assert seen == [spec.url] and progress[-1] == (len(data), len(data))
    # Second time: straight from the cache.
    monkeypatch.setattr(R, "_urlopen", lambda url, timeout: pytest.fail("downloaded twice"))
    assert W.resolve_weights("imagenet") == path


def test_download_with_wrong_md5_leaves_nothing(keras_home, monkeypatch):
    monkeypatch.setattr(R, "_urlopen", lambda url, timeout: FakeResponse(b"truncated garbage"))
    with pytest.raises(W.WeightsError, match="expected 0a58e3b7378bc2990ea3b43d5981f1f6"):
        W.resolve_weights("imagenet")
    assert not list((keras_home / "models").glob("*"))


def test_other_architecture_names_first_mismatching_layer(tmp_path):
    other = build_xception(classes=10, input_shape=(96, 96, 3))
    path = write_legacy_h5(other, tmp_path / "ten_classes.h5")
    with pytest.raises(W.WeightsError) as e:
        W.load_weights(build_xception(), path)
    assert str(e.value) == (
        f"{path}: not Xception weights for this model: layer #81 'predictions' expects "
        "[2048x1000, 1000], the file's layer 'predictions' has [2048x10, 10]"
    )


def test_a_different_network_is_refused(tmp_path):
    import keras

    small = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, name="c")])
    path = write_legacy_h5(small, tmp_path / "small.h5")
    with pytest.raises(W.WeightsError, match=r"layer #1 'block1_conv1' expects \[3x3x3x32\], the file's layer 'c'"):
        W.load_weights(build_xception(), path)


def test_notop_file_into_top_model(tmp_path):
    path = write_legacy_h5(build_xception(include_top=False), tmp_path / "notop.h5")
    with pytest.raises(W.WeightsError, match="the file has 80 layers with weights, the model 81"):
        W.load_weights(build_xception(), path)


def test_keras3_formats_load(tmp_path, engine):
    """A Keras 3 .weights.h5 and a .keras file of this architecture give the same predictions."""
    src = engine.model
    x = np.random.default_rng(0).uniform(-1, 1, (2, 299, 299, 3)).astype("float32")
    expected = np.asarray(src(x, training=False))
    src.save_weights(tmp_path / "w.weights.h5")
    src.save(tmp_path / "m.keras")
    for name in ("w.weights.h5", "m.keras"):
        m = build_xception()
        W.load_weights(m, tmp_path / name)
        assert np.abs(np.asarray(m(x, training=False)) - expected).max() < 1e-6, name


def test_not_a_weights_file(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("hello")
    with pytest.raises(W.WeightsError, match=r"bad\.h5: not a weights file"):
        W.load_weights(build_xception(), bad)


def test_cli_weights_errors_exit_2(tmp_path, samples, keras_home, no_network):
    runner = CliRunner()
    r = runner.invoke(cli, ["predict", str(samples[0]), "--weights", str(tmp_path / "missing.h5")])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"Error: {tmp_path / 'missing.h5'}: weights file not found"
    r = runner.invoke(cli, ["predict", str(samples[0]), "-o", str(tmp_path / "out.jsonl")])
    assert r.exit_code == 2
    assert "offline" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.jsonl").exists(), "a weights error must not leave an empty output file"


def test_what_a_weights_choice_is_recorded_as(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert W.weights_identity(None) == W.weights_identity(" None ") == "none"
    assert W.weights_identity("ImageNet") == "imagenet"
    assert W.weights_identity("w.h5") == str(tmp_path / "w.h5")
    (tmp_path / "w.h5").write_bytes(b"x")
    (tmp_path / "link.h5").symlink_to(tmp_path / "w.h5")
    assert W.same_weights("w.h5", "./link.h5") and W.same_weights("none", None)
    assert not W.same_weights("imagenet", "none") and not W.same_weights("w.h5", "imagenet")
    assert W.is_random("NONE") and not W.is_random("imagenet")


def with_attrs(tmp_path, weights_file, **attrs):
    import json
    import shutil

    import h5py

    path = tmp_path / "model.h5"
    shutil.copyfile(weights_file, path)
    with h5py.File(path, "r+") as f:
        for key, value in attrs.items():
            f.attrs[key] = value if isinstance(value, str) else json.dumps(value)
    return path


def test_classes_and_resize_a_weights_choice_gives_without_loading_a_network(tmp_path, weights_file, keras_home,
                                                                              no_network):
    assert W.weights_classes("imagenet") == W.weights_classes("none") == W.weights_classes(weights_file) == 1000
    assert W.weights_resize("imagenet") == W.weights_resize(weights_file) == "center-crop"
    assert no_network == []
    names = [f"c{i}" for i in range(1000)]
    mine = with_attrs(tmp_path, weights_file, xception_class_names=names, xception_preprocessing={"resize": "squash"})
    info = W.weights_info(mine)
    assert (info.format, info.class_names, info.resize) == ("legacy-h5", tuple(names), "squash")
    assert W.weights_resize(mine) == "squash" and W.weights_resize(mine, "center-crop") == "center-crop"


@pytest.mark.parametrize("attrs, message", [
    ({"xception_class_names": ["a", "b", "c"]}, "the file names 3 classes for a classifier of 1000 outputs"),
    ({"xception_class_names": "[1, 2"}, "the file's class names: not valid JSON"),
    ({"xception_class_names": {"a": 1}}, "the file's class names are not a list of strings"),
    ({"xception_preprocessing": {"resize": "stretch"}}, "the file's preprocessing is not an object with 'resize'"),
    ({"xception_preprocessing": "[" * 100 + "]" * 100}, "the file's preprocessing: JSON nested deeper than 32"),
])
def test_what_a_trained_model_says_about_itself_is_checked(tmp_path, weights_file, attrs, message):
    path = with_attrs(tmp_path, weights_file, **attrs)
    with pytest.raises(W.WeightsError) as e:
        W.weights_info(path)
    assert str(e.value).startswith(f"{path}: {message}") and "\n" not in str(e.value)
