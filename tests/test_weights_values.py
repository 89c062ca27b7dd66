"""Weights that have the right shapes but make the network invalid are refused, by layer."""

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli

BAD_LAYER = "block5_sepconv2_bn"


def set_bn(path, layer, index, value, channel=7):
    """Set one channel of a BatchNormalization weight (0 gamma .. 3 moving_variance) in a legacy .h5."""
    with h5py.File(path, "r+") as f:
        group = f[layer]
        name = group.attrs["weight_names"][index]
        data = group[name][()]
        data[channel] = value
        group[name][...] = data


@pytest.fixture(scope="module")
def negative_variance(tmp_path_factory, weights_file):
    path = tmp_path_factory.mktemp("bad") / "negative_variance.h5"
    shutil.copyfile(weights_file, path)
    set_bn(path, BAD_LAYER, 3, -0.5)
    return path


def refused(r, path, layer, what="has a negative moving variance"):
    assert r.exit_code == 2, r.output
    assert r.stdout == "" and "nan" not in r.stdout.lower()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: layer '{layer}' {what}"), r.stderr


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_a_negative_moving_variance_is_refused_by_layer(negative_variance, samples, runtime):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # folding it gave NaN with a RuntimeWarning
        r = CliRunner().invoke(cli, ["predict", str(samples[0]), "-f", "jsonl", "--runtime", runtime,
                                     "--weights", str(negative_variance)])
    refused(r, negative_variance, BAD_LAYER)


def test_embed_refuses_it_too(negative_variance, samples):
    r = CliRunner().invoke(cli, ["embed", str(samples[0]), "--weights", str(negative_variance)])
    refused(r, negative_variance, BAD_LAYER)


def test_a_batch_norm_that_overflows_float32_is_refused(tmp_path, weights_file, samples):
    path = tmp_path / "huge_gamma.h5"
    shutil.copyfile(weights_file, path)
    set_bn(path, "block1_conv1_bn", 0, 3e38)  # finite, but gamma / sqrt(var + eps) is not
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "-f", "jsonl", "--weights", str(path)])
    refused(r, path, "block1_conv1_bn", "overflows float32")


def test_nan_is_still_refused_by_layer(tmp_path, weights_file, samples):
    path = tmp_path / "nan.h5"
    shutil.copyfile(weights_file, path)
    set_bn(path, BAD_LAYER, 1, np.nan)
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "-f", "jsonl", "--weights", str(path)])
    refused(r, path, BAD_LAYER, "holds NaN values")


def test_a_keras_weights_file_with_a_negative_variance_is_refused(tmp_path, engine, samples):
    """Keras 3 formats are checked after Keras reads them (TensorFlow runtime)."""
    path = tmp_path / "bad.weights.h5"
    engine.model.save_weights(path)
    with h5py.File(path, "r+") as f:
        var = f["layers/batch_normalization/vars/3"]  # the first BatchNormalization: block1_conv1_bn
        data = var[()]
        data[0] = -1.0
        var[...] = data
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "-f", "jsonl", "--weights", str(path)])
    refused(r, path, "block1_conv1_bn")


def test_valid_weights_still_predict(weights_file, samples):
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "-f", "jsonl", "--weights", str(weights_file)])
    assert r.exit_code == 0, r.output
    probs = [p["probability"] for p in json.loads(r.stdout)["predictions"]]
    assert all(np.isfinite(probs))
