"""`xception train`: your own classes from folders, the labels carried by the model file."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xception_cli.cli import cli
from xception_cli.synthetic import make_shapes_dataset as make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("data") / "shapes")
    (root / "red" / "broken.jpg").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def trained(dataset, weights_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "shapes.h5"
    r = CliRunner().invoke(cli, ["train", str(dataset), "-o", str(out), "--weights", str(weights_file),
                                 "--epochs", "30"])
    assert r.exit_code == 0, r.output
    return out, r


def test_training_reaches_high_validation_accuracy(trained):
    out, r = trained
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["classes"] == ["circles", "red", "stripes"]
    assert report["final_val_accuracy"] >= 0.9
    assert len(report["history"]) == 30 and report["history"][-1]["train_accuracy"] >= 0.9
    assert np.array(report["confusion_matrix"]).shape == (3, 3)
    assert sum(map(sum, report["confusion_matrix"])) == sum(report["class_counts"]["val"].values())
    assert report["class_counts"]["train"]["red"] + report["class_counts"]["val"]["red"] == 10
    assert [s["path"].endswith("broken.jpg") for s in report["skipped"]] == [True]
    assert "broken.jpg" in r.stderr and "1 unreadable photo(s) skipped" in r.stderr
    assert report["timings_s"]["features"] > report["timings_s"]["head"]


def test_predict_with_the_model_prints_the_folder_names(trained, tmp_path):
    out, _ = trained
    held_out = make_dataset(tmp_path / "new", per_class=3, seed=7)  # photos the model never saw
    r = CliRunner().invoke(cli, ["predict", str(held_out), "--weights", str(out), "-f", "jsonl", "-k", "5"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    right = sum(x["predictions"][0]["label"] == Path(x["path"]).parent.name for x in recs)
    assert right >= 8  # of 9
    first = recs[0]["predictions"]
    assert len(first) == 3  # -k capped at the number of classes
    assert all(p["wnid"] is None for p in first) and {p["label"] for p in first} == {"circles", "red", "stripes"}
    assert sorted(p["index"] for p in first) == [0, 1, 2]


def test_resume_with_a_trained_model_and_the_default_k(trained, tmp_path):
    """-k 5 against 3 classes gives 3 labels, on the first run and on the resume alike."""
    out, _ = trained
    photos = tmp_path / "p"
    photos.mkdir()
    for i, colour in enumerate([(230, 220, 40), (20, 30, 200)]):
        Image.new("RGB", (120, 90), colour).save(photos / f"{i}.png")
    labels = tmp_path / "labels.jsonl"
    r = CliRunner().invoke(cli, ["predict", str(photos / "0.png"), "-o", str(labels), "--weights", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["predict", str(photos), "-o", str(labels), "--weights", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert [len(json.loads(line)["predictions"]) for line in labels.read_text().splitlines()] == [3, 3]


def test_the_model_loads_without_tensorflow(trained, tmp_path):
    """The model is an HDF5 weights file read with h5py: no code from the file, no Keras needed."""
    out, _ = trained
    poison = tmp_path / "poison"
    for name in ("tensorflow", "keras"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} imported')\n")
    img = tmp_path / "c.png"
    Image.new("RGB", (200, 150), (230, 220, 40)).save(img)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(poison)!r})
        from xception_cli.cli import main
        sys.argv = ["xception", "predict", {str(img)!r}, "-f", "jsonl", "--weights", {str(out)!r}]
        main()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"][0]["label"] in {"circles", "red", "stripes"}


def test_too_small_a_class_is_refused_before_any_work(tmp_path, weights_file):
    root = make_dataset(tmp_path / "d", per_class=4)
    for p in list((root / "red").iterdir())[2:]:
        p.unlink()
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(cli, ["train", str(root), "-o", str(out), "--weights", str(weights_file)])
    assert r.exit_code == 2
    assert "too few photos in 'red' (2): each class needs at least 3" in r.stderr
    assert not out.exists()
    (root / "circles").rename(tmp_path / "elsewhere")
    (root / "stripes").rename(tmp_path / "elsewhere2")
    r = CliRunner().invoke(cli, ["train", str(root), "-o", str(out), "--weights", str(weights_file)])
    assert r.exit_code == 2 and "training needs at least 2" in r.stderr


def test_a_val_dir_sharing_training_photos_is_refused(tmp_path, weights_file):
    root = make_dataset(tmp_path / "d", per_class=4)
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(cli, ["train", str(root), "--val-dir", str(root), "-o", str(out), "--weights",
                                 str(weights_file)])
    assert r.exit_code == 2 and "of its photos are training photos too" in r.stderr
    assert not out.exists()
    val = tmp_path / "val" / "red"
    val.mkdir(parents=True)
    first = sorted((root / "red").iterdir())[0]
    os.link(first, val / "linked.png")  # the same photo under another name
    (tmp_path / "val" / "circles").mkdir()
    other = sorted((root / "circles").iterdir())[0]
    (tmp_path / "val" / "circles" / other.name).write_bytes(other.read_bytes())  # a copy is another photo
    r = CliRunner().invoke(cli, ["train", str(root), "--val-dir", str(tmp_path / "val"), "-o", str(out),
                                 "--weights", str(weights_file)])
    assert r.exit_code == 2 and "1 of its photos are training photos too" in r.stderr


def test_fine_tuning_keeps_batchnorm_statistics_frozen(dataset, weights_file, tmp_path):
    out = tmp_path / "ft.h5"
    r = CliRunner().invoke(cli, ["train", str(dataset), "-o", str(out), "--weights", str(weights_file), "--epochs",
                                 "5", "--fine-tune-epochs", "1", "--unfreeze-from", "14"])
    assert r.exit_code == 0, r.output
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert [h["stage"] for h in report["history"]][-1] == "fine-tune"

    def layer(path, name):
        with h5py.File(path, "r") as f:
            g = f[name]
            return [g[n][()] for n in [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]]

    for bn in ("block14_sepconv1_bn", "block14_sepconv2_bn", "block3_sepconv1_bn"):
        before, after = layer(weights_file, bn), layer(out, bn)
        assert np.array_equal(before[2], after[2]) and np.array_equal(before[3], after[3])  # moving mean, var
    assert np.array_equal(layer(weights_file, "block13_sepconv2")[1], layer(out, "block13_sepconv2")[1])  # frozen
    assert not np.array_equal(layer(weights_file, "block14_sepconv2")[1], layer(out, "block14_sepconv2")[1])


def test_a_trained_model_exports_and_embeds(trained, tmp_path):
    out, _ = trained
    ir = tmp_path / "shapes.xml"
    r = CliRunner().invoke(cli, ["export", "openvino", "-o", str(ir), "--weights", str(out)])
    assert r.exit_code == 0, r.output
    meta = json.loads(ir.with_name(ir.name + ".meta.json").read_text())
    assert meta["labels"] == [[None, "circles"], [None, "red"], [None, "stripes"]]
    assert meta["output"]["shape"] == ["N", 3]
    img = tmp_path / "c.png"
    Image.new("RGB", (200, 150), (230, 220, 40)).save(img)
    from_h5 = CliRunner().invoke(cli, ["predict", str(img), "-f", "jsonl", "--weights", str(out)])
    from_ir = CliRunner().invoke(cli, ["predict", str(img), "-f", "jsonl", "--weights", str(ir)])
    a, b = json.loads(from_h5.stdout)["predictions"], json.loads(from_ir.stdout)["predictions"]
    assert [p["label"] for p in a] == [p["label"] for p in b] and b[0]["wnid"] is None
    r = CliRunner().invoke(cli, ["embed", str(img), "--weights", str(out)])
    assert r.exit_code == 0 and len(json.loads(r.stdout)["embedding"]) == 2048


def test_train_refuses_to_overwrite_its_base_and_counts_readable_photos(tmp_path, weights_file):
    import shutil

    root = make_dataset(tmp_path / "d", per_class=4)
    mine = tmp_path / "base.h5"
    shutil.copy(weights_file, mine)
    r = CliRunner().invoke(cli, ["train", str(root), "-o", str(mine), "--weights", str(mine)])
    assert r.exit_code == 2 and "is the weights file" in r.stderr
    for p in list((root / "red").iterdir())[1:]:
        p.write_bytes(b"junk")  # 4 files, 1 readable
    r = CliRunner().invoke(cli, ["train", str(root), "-o", str(tmp_path / "m.h5"), "--weights", str(weights_file)])
    assert r.exit_code == 2 and "class 'red': 1 readable photo(s)" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.h5", "d"]  # nothing written, nothing staged
