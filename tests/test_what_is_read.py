"""What a command reads and what it records: the tree is the tree (links out of a folder given are
not followed unless --follow-links; a glob cannot loop), only weights the user named are loaded,
outputs name a weights file and its md5 (never where it lives), and every file is created
exclusively (a link planted at a name the tool writes is never followed)."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli
from xception_cli.weights import md5sum


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [*map(str, args)], **kwargs)


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# the tree is the tree -------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path, image_dir, samples):
    """image_dir with a link to a folder outside it, a link to a file outside it, and links inside
    it (to a subfolder, and to itself)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(samples[0], outside / "stranger.jpg")
    (image_dir / "sub").mkdir()
    shutil.copy(samples[1], image_dir / "sub" / "inner.jpg")
    (image_dir / "away").symlink_to(outside)
    (image_dir / "far.jpg").symlink_to(outside / "stranger.jpg")
    (image_dir / "again").symlink_to("sub")
    (image_dir / "self").symlink_to(".")
    return image_dir


def names(records, base):
    return sorted(os.path.relpath(r["path"], base) for r in records)


def test_links_out_of_the_folder_are_skipped_and_said_once(tree, weights_file):
    r = run("predict", tree, "--weights", weights_file, "-f", "jsonl", "-k", "1")
    assert r.exit_code == 0, r.output
    got = names(jsonl(r.stdout), tree)
    assert "away/stranger.jpg" not in got and "far.jpg" not in got
    # the 4 photos and sub/inner.jpg, once (by again/ or sub/: links inside the folder work)
    assert len(got) == 5 and any(n.endswith("/inner.jpg") for n in got)
    warnings = [line for line in r.stderr.splitlines() if "lead out of the folder" in line]
    assert len(warnings) == 1 and "away" in warnings[0] and "far.jpg" in warnings[0]
    assert "--follow-links" in warnings[0]


def test_follow_links_follows_them(tree, weights_file):
    r = run("embed", tree, "--weights", weights_file, "-f", "jsonl", "--follow-links")
    assert r.exit_code == 0, r.output
    got = names(jsonl(r.stdout), tree)
    assert "away/stranger.jpg" in got or "far.jpg" in got  # one file, by either name
    assert len(got) == 6 and "lead out" not in r.stderr


def test_a_glob_keeps_to_its_tree_and_never_loops(tree, weights_file, tmp_path):
    (tree / "l1").symlink_to(".")
    (tree / "l2").symlink_to(".")
    cmd = [sys.executable, "-m", "xception_cli", "predict", f"{tree}/**/*.jpg", "--weights", str(weights_file),
           "-f", "jsonl", "-k", "1"]
    import xception_cli  # the child runs the package this test imported

    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(xception_cli.__file__))}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=150, cwd=tmp_path, env=env)  # it used to loop
    assert p.returncode == 0, p.stderr
    got = names(jsonl(p.stdout), tree)
    assert "away/stranger.jpg" not in got and "far.jpg" not in got and any(n.endswith("inner.jpg") for n in got)
    assert len(got) == len({os.path.basename(n) for n in got})  # each photo once, whatever the links
    assert "lead out of the folder" in p.stderr


def test_train_keeps_to_its_data_folder(tmp_path, weights_file, monkeypatch):
    from xception_cli.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", per_class=4)
    elsewhere = make_shapes_dataset(tmp_path / "elsewhere", per_class=4)
    (data / "red" / "more").symlink_to(elsewhere / "red")
    (data / "zother").symlink_to(elsewhere / "stripes")  # a class folder that is a link out
    (tmp_path / "models").mkdir()
    shutil.copy(weights_file, tmp_path / "models" / "base.h5")
    monkeypatch.chdir(tmp_path)
    r = run("train", data, "-o", tmp_path / "m.h5", "--weights", "models/base.h5", "--epochs", "2")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "m.h5.report.json").read_text())
    assert report["classes"] == ["circles", "red", "stripes"]
    assert report["class_counts"]["train"]["red"] + report["class_counts"]["val"]["red"] == 4
    assert "lead out of the folder" in r.stderr and "zother" in r.stderr
    # what identifies the base weights, not where they live
    assert str(tmp_path) not in json.dumps(report["options"]["weights"])
    with h5py.File(tmp_path / "m.h5", "r") as f:
        meta = json.loads(f.attrs["xception_preprocessing"])
    assert meta["base_weights"] == "base.h5" and meta["base_weights_md5"] == md5sum(weights_file)
    assert str(tmp_path) not in json.dumps(meta)


# only what the user named is loaded -----------------------------------------------------------

@pytest.fixture
def library(tmp_path, image_dir, weights_file):
    """Embeddings made with a weights file kept in a folder of its own (``x/bomb.h5``)."""
    (tmp_path / "x").mkdir()
    bomb = tmp_path / "x" / "bomb.h5"
    shutil.copy(weights_file, bomb)
    out = tmp_path / "lib.npz"
    r = run("embed", image_dir, "-o", out, "--weights", bomb)
    assert r.exit_code == 0, r.output
    return out, bomb


def test_similar_never_loads_the_weights_an_embeddings_file_names(library, image_dir):
    out, bomb = library
    r = run("similar", next(image_dir.glob("*.jpg")), "--embeddings", out, "-f", "jsonl")
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert "bomb.h5" in line and "--weights" in line


def test_similar_uses_the_weights_given_and_says_which(library, image_dir):
    out, bomb = library
    r = run("similar", next(image_dir.glob("*.jpg")), "--embeddings", out, "--weights", bomb, "-f", "jsonl", "-k", "1")
    assert r.exit_code == 0, r.output
    assert jsonl(r.stdout)[0]["neighbors"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert f"embedding the queries with bomb.h5 (md5 {md5sum(bomb)})" in r.stderr


def test_similar_finds_the_recorded_weights_the_usual_way(library, image_dir, monkeypatch):
    out, bomb = library
    monkeypatch.setenv("XCEPTION_WEIGHTS", str(bomb))  # the same file, named where weights are looked for
    r = run("similar", next(image_dir.glob("*.jpg")), "--embeddings", out, "-f", "jsonl", "-k", "1")
    assert r.exit_code == 0, r.output
    assert f"embedding the queries with bomb.h5 (md5 {md5sum(bomb)})" in r.stderr


def test_similar_refuses_weights_whose_md5_differs(library, image_dir, tmp_path):
    out, bomb = library
    other = tmp_path / "bomb.h5"  # the same name, another file
    shutil.copy(bomb, other)
    with h5py.File(other, "a") as f:
        f.attrs["note"] = "changed"
    r = run("similar", next(image_dir.glob("*.jpg")), "--embeddings", out, "--weights", other, "-f", "jsonl")
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert md5sum(bomb) in line and md5sum(other) in line


# outputs record a weights file's name and md5 -----------------------------------------------

def test_outputs_name_the_weights_file_not_where_it_lives(tmp_path, image_dir, weights_file, monkeypatch):
    from xception_cli.output import load_embeddings

    (tmp_path / "models").mkdir()
    shutil.copy(weights_file, tmp_path / "models" / "x.h5")
    monkeypatch.chdir(tmp_path)
    md5 = md5sum(weights_file)
    for name in ("e.jsonl", "e.npz", "e.parquet"):
        r = run("embed", image_dir.name, "-o", name, "--weights", "models/x.h5")  # photos/: named as given
        assert r.exit_code == 0, r.output
        meta = load_embeddings(name).meta
        assert meta["weights"] == "x.h5" and meta["weights_md5"] == md5
        assert str(tmp_path).encode() not in (tmp_path / name).read_bytes()
    assert all(rec["options"]["weights"] == "x.h5" for rec in jsonl((tmp_path / "e.jsonl").read_text()))
    r = run("export", "onnx", "-o", "m.onnx", "--weights", "models/x.h5")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "m.onnx.meta.json").read_text()
    assert json.loads(text)["weights"]["file"] == "x.h5" and json.loads(text)["weights"]["md5"] == md5
    assert str(tmp_path) not in text


def test_resume_continues_a_file_that_recorded_a_path(tmp_path, image_dir, weights_file, samples):
    out = tmp_path / "e.jsonl"
    assert run("embed", image_dir, "-o", out, "--weights", weights_file).exit_code == 0
    recs = jsonl(out.read_text())
    for i, rec in enumerate(recs):  # as written before outputs named the file: its path (with, then without md5)
        rec["options"]["weights"] = "/home/alice/models/" + os.path.basename(weights_file)
        if i:
            rec["options"].pop("weights_md5")
    out.write_text("".join(json.dumps(rec) + "\n" for rec in recs))
    shutil.copy(samples[0], image_dir / "new.jpg")
    r = run("embed", image_dir, "-o", out, "--weights", weights_file, "--resume")
    assert r.exit_code == 0, r.output
    assert f"{len(recs)} already embedded" in r.stderr and len(jsonl(out.read_text())) == len(recs) + 1


# every file is created exclusively ------------------------------------------------------------

def test_links_planted_at_an_exports_names_are_never_followed(tmp_path, weights_file):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = [tmp_path / f".m.onnx.{os.getpid()}.part", tmp_path / "m.onnx.meta.json"]
    for link in planted:
        link.symlink_to(victim)
    r = run("export", "onnx", "-o", tmp_path / "m.onnx", "--weights", weights_file)
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious"
    assert not (tmp_path / "m.onnx").is_symlink() and not (tmp_path / "m.onnx.meta.json").is_symlink()
    assert json.loads((tmp_path / "m.onnx.meta.json").read_text())["format"] == "onnx"
