"""The same network as keras.applications.Xception, given the same weights file."""

import json

import numpy as np
from click.testing import CliRunner

from xception_cli.cli import cli
from xception_cli.labels import top_k
from xception_cli.preprocess import preprocess_image


def test_matches_reference_on_real_photos(samples, engine, reference_model):
    x = np.stack([preprocess_image(p) for p in samples])
    ours = engine(x)
    theirs = np.asarray(reference_model.predict(x, verbose=0))
    assert ours.shape == theirs.shape == (len(samples), 1000)
    assert np.abs(ours - theirs).max() < 1e-4
    for a, b in zip(top_k(ours, 5), top_k(theirs, 5)):
        assert [p.index for p in a] == [p.index for p in b]
    # The generated weights behave like trained ones: the photos do not all get one answer.
    assert len({row[0].index for row in top_k(ours, 5)}) > 1


def test_batch_size_does_not_change_results(samples, engine):
    x = np.stack([preprocess_image(p) for p in samples])
    together = engine(x)
    alone = np.concatenate([engine(x[i : i + 1]) for i in range(len(x))])
    assert np.abs(together - alone).max() < 1e-5


def test_cli_matches_reference(presized, weights_file, reference_model):
    """`predict --resize squash -f json` on 299x299 copies equals Keras' own pipeline on them."""
    import keras
    from keras.applications.xception import preprocess_input

    files = sorted(presized.glob("*.png"))
    result = CliRunner().invoke(
        cli, ["predict", str(presized), "--resize", "squash", "-f", "json", "--weights", str(weights_file)]
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["path"] for r in records] == [str(f) for f in files]

    batch = preprocess_input(np.stack([keras.utils.img_to_array(keras.utils.load_img(f)) for f in files]))
    probs = reference_model.predict(batch, verbose=0)
    for record, expected in zip(records, top_k(probs, 5)):
        got = record["predictions"]
        assert [p["index"] for p in got] == [p.index for p in expected]
        assert [p["label"] for p in got] == [p.label for p in expected]
        assert max(abs(p["probability"] - e.probability) for p, e in zip(got, expected)) < 1e-4
