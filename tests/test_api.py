"""The Python API as a developer uses it: engines and their weights files, PredictJob, Classifier,
nearest() and the Ray predictor."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest

from xception_cli import Classifier, PredictJob, PredictOptions, nearest
from xception_cli.errors import OutputError
from xception_cli.ui import QuietUI


def test_an_engine_follows_its_weights_file(weights_file, tmp_path):
    """A file rewritten in place (trained again to the same name) is another network."""
    from xception_cli.engine import get_engine

    mine = tmp_path / "m.h5"
    shutil.copy(weights_file, mine)
    first = get_engine(str(mine))
    assert get_engine(str(mine)) is first
    st = os.stat(mine)
    os.utime(mine, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert get_engine(str(mine)) is not first


def test_predict_job_takes_the_format_from_the_extension(weights_file, samples, tmp_path):
    out = tmp_path / "labels.csv"
    assert PredictJob(PredictOptions(inputs=[str(samples[0])], weights=str(weights_file), output=str(out)),
                      QuietUI()).run() == 0
    assert out.read_text().startswith("path,rank,index,wnid,label,probability,error,file_id\n")
    with pytest.raises(OutputError, match="unknown output format 'xml'"):
        PredictOptions(inputs=["x.jpg"], fmt="xml")


def test_predict_job_puts_the_warning_filters_back(weights_file, samples):
    before = list(warnings.filters)
    PredictJob(PredictOptions(inputs=[str(samples[0])], weights=str(weights_file)), QuietUI(),
               stdout=open(os.devnull, "w")).run()
    assert warnings.filters == before


def test_classifier_defaults_and_inputs(weights_file, samples):
    clf = Classifier(weights=str(weights_file), top_k=2)
    (r,) = clf.predict(str(samples[0]))
    assert len(r.predictions) == 2  # the classifier's own top_k
    (b,) = clf.predict(samples[0].read_bytes())  # the file's bytes: one input, not one per byte
    assert [p.index for p in b.predictions] == [p.index for p in r.predictions]
    with pytest.raises(ValueError, match="top_k must be a whole number"):
        clf.predict(str(samples[0]), top_k="3")
    assert clf.predict_proba(np.zeros((0, 299, 299, 3), np.float32)).shape == (0, 1000)


def test_nearest_checks_its_arguments():
    db = np.eye(3, dtype=np.float32)
    (m,) = nearest(db[1], db, ["a", "b", "c"], k=1)  # one 1-D query
    assert m[0].path == "b"
    for bad in ({"k": 0}, {"k": -1}, {"paths": ["a"]}):
        with pytest.raises(ValueError):
            nearest(db[:1], db, **({"paths": ["a", "b", "c"], "k": 2} | bad))


def test_the_ray_predictor_refuses_what_it_would_get_wrong(weights_file, samples):
    import sys

    from xception_cli.heads import Classify
    from xception_cli.preprocess import load_image, preprocess_image
    from xception_cli.scale import XceptionPredictor

    def ray_up():
        return "ray" in sys.modules and sys.modules["ray"].is_initialized()

    with pytest.raises(TypeError, match="head must be"):
        XceptionPredictor(weights=str(weights_file), head="classify")
    was_up = ray_up()
    p = XceptionPredictor(weights=str(weights_file), head=Classify(1))
    assert ray_up() == was_up  # outside Ray it starts no Ray
    with pytest.raises(ValueError, match="'pixels' must be uint8"):
        p({"path": np.array(["cat"]), "pixels": preprocess_image(samples[0])[None]})
    out = p({"path": np.array(["cat"]), "pixels": load_image(samples[0])[None]})
    assert json.loads(out["record"][0])["predictions"][0]["rank"] == 1
