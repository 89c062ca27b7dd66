"""A model's preprocessing travels with it: ``xception train --resize squash`` records squash in the
model file (and ``export`` in the IR's metadata), and ``predict``/``embed`` use it unless
``--resize`` says otherwise."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli
from xception_cli.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def squash_model(tmp_path_factory, weights_file):
    root = tmp_path_factory.mktemp("squash")
    data = make_shapes_dataset(root / "data", per_class=4)
    model = root / "squash.h5"
    r = CliRunner().invoke(cli, ["train", str(data), "-o", str(model), "--weights", str(weights_file), "--epochs", "2",
                                 "--resize", "squash"])
    assert r.exit_code == 0, r.output
    return model


def probabilities(weights, sample, *options) -> np.ndarray:
    r = CliRunner().invoke(cli, ["predict", str(sample), "-f", "jsonl", "-k", "3", "--weights", str(weights),
                                 *options])
    assert r.exit_code == 0, r.output
    out = np.zeros(3)
    for p in json.loads(r.stdout)["predictions"]:
        out[p["index"]] = p["probability"]
    return out


def direct(model, sample, resize) -> np.ndarray:
    from xception_cli.engine import get_engine
    from xception_cli.preprocess import preprocess_image

    return get_engine(weights=str(model))(preprocess_image(sample, 299, resize)[None])[0]


def test_predict_uses_the_models_resize_unless_told(squash_model, samples):
    sample = samples[1]  # not square: the two modes see different pixels
    default = probabilities(squash_model, sample)
    assert np.abs(default - direct(squash_model, sample, "squash")).max() < 1e-5
    assert np.array_equal(default, probabilities(squash_model, sample, "--resize", "squash"))
    crop = probabilities(squash_model, sample, "--resize", "center-crop")
    assert np.abs(crop - direct(squash_model, sample, "center-crop")).max() < 1e-5
    assert np.abs(crop - default).max() > 1e-4


def test_embed_uses_it_too(squash_model, samples):
    def embedding(*options):
        r = CliRunner().invoke(cli, ["embed", str(samples[1]), "--weights", str(squash_model), *options])
        assert r.exit_code == 0, r.output
        return np.array(json.loads(r.stdout)["embedding"])

    default = embedding()
    assert np.array_equal(default, embedding("--resize", "squash"))
    assert not np.allclose(default, embedding("--resize", "center-crop"))


def test_the_python_api_follows_the_model(squash_model):
    from xception_cli import Classifier

    assert Classifier(weights=squash_model).resize == "squash"
    assert Classifier(weights=squash_model, resize="center-crop").resize == "center-crop"


def test_an_ir_exported_from_the_model_carries_it(squash_model, samples, tmp_path):
    ir = tmp_path / "squash.xml"
    r = CliRunner().invoke(cli, ["export", "openvino", "--weights", str(squash_model), "-o", str(ir)])
    assert r.exit_code == 0, r.output
    meta = json.loads(ir.with_name("squash.xml.meta.json").read_text())
    assert meta["preprocessing"]["resize"] == "squash"
    sample = samples[1]
    assert np.abs(probabilities(ir, sample) - direct(squash_model, sample, "squash")).max() < 1e-4
    crop = probabilities(ir, sample, "--resize", "center-crop")
    assert np.abs(crop - direct(squash_model, sample, "center-crop")).max() < 1e-4
