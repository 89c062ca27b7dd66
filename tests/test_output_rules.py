"""The output rules every command gets from the one output layer (``xception_cli.output``): no
fixed temporary names, whole files published or not at all, one resume rule for every format,
files recognised by what they are. Each test is a defect a user hit, through the command line."""

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli

pytest.importorskip("pyarrow")


@pytest.fixture
def xc(weights_file):
    def invoke(command, *args):
        return CliRunner().invoke(cli, [command, *map(str, args), "--weights", str(weights_file)])

    return invoke


def plant(link, victim="precious data\n"):
    """A symbolic link someone planted at a name the tool used to write to."""
    target = link.parent / "victim.txt"
    target.write_text(victim)
    os.symlink(target, link)
    return target


def leftovers(folder, name):
    return [n for n in os.listdir(folder) if n.startswith(f".{name}.") or n.startswith(f"{name}.")]


# Fixed temporary names never follow a planted link --------------------------------------------

def test_embed_npz_never_writes_through_a_planted_temporary_name(xc, photos, tmp_path):
    out = tmp_path / "lib.npz"
    victim = plant(tmp_path / "lib.npz.resume-tmp")
    assert xc("embed", photos / "cat.jpg", "-o", out).exit_code == 0
    assert xc("embed", photos, "-o", out, "--resume").exit_code == 0
    assert victim.read_text() == "precious data\n"
    assert not os.path.islink(out) and np.load(out)["embeddings"].shape == (4, 2048)
    assert leftovers(tmp_path, "lib.npz") == ["lib.npz.resume-tmp"]  # the planted link, nothing of ours


def test_a_resume_rewrite_never_writes_through_a_planted_temporary_name(xc, photos, tmp_path):
    out = tmp_path / "labels.jsonl"
    (photos / "late.jpg").write_bytes(b"not yet an image")
    assert xc("predict", photos, "-o", out).exit_code == 1  # an error record: dropped on resume, a rewrite
    victim = plant(tmp_path / "labels.jsonl.resume-tmp")
    shutil.copy(photos / "cat.jpg", photos / "late.jpg")
    r = xc("predict", photos, "-o", out, "--resume")
    assert r.exit_code == 0, r.stderr
    assert victim.read_text() == "precious data\n" and not os.path.islink(out)
    assert len(out.read_text().splitlines()) == 5


def test_a_hard_linked_rewrite_never_writes_through_a_planted_backup_name(xc, photos, tmp_path):
    out, link = tmp_path / "labels.jsonl", tmp_path / "also.jsonl"
    (photos / "late.jpg").write_bytes(b"not yet an image")
    assert xc("predict", photos, "-o", out).exit_code == 1
    os.link(out, link)
    victim = plant(tmp_path / "labels.jsonl.resume-backup")
    shutil.copy(photos / "cat.jpg", photos / "late.jpg")
    assert xc("predict", photos, "-o", out, "--resume").exit_code == 0
    assert victim.read_text() == "precious data\n"
    assert out.read_bytes() == link.read_bytes() and len(link.read_text().splitlines()) == 5


# Resume: one reader per format, one rule ------------------------------------------------------

def test_a_csv_cut_inside_its_first_image_rows_resumes_at_the_right_k(xc, photos, tmp_path):
    out = tmp_path / "lim.csv"
    assert xc("predict", photos / "cat.jpg", "-o", out, "-k", "5").exit_code == 0
    lines = out.read_text().splitlines(True)
    out.write_text("".join(lines[:4]))  # the header and 3 of cat.jpg's 5 rows: a kill between rows
    r = xc("predict", photos, "-o", out, "-k", "5", "--resume")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    by_path = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row["rank"])
    assert len(by_path) == 4 and all(ranks == ["1", "2", "3", "4", "5"] for ranks in by_path.values())


def test_resume_from_another_folder_never_skips_a_different_file(xc, samples, tmp_path, monkeypatch):
    for d, photo in (("A", samples[0]), ("B", samples[1])):
        (tmp_path / d / "imgs").mkdir(parents=True)
        shutil.copy(photo, tmp_path / d / "imgs" / "a.jpg")
    out = tmp_path / "out" / "x.jsonl"
    out.parent.mkdir()
    monkeypatch.chdir(tmp_path / "A")
    assert xc("predict", "imgs", "-o", out).exit_code == 0
    monkeypatch.chdir(tmp_path / "B")
    r = xc("predict", "imgs", "-o", out, "--resume")
    assert r.exit_code == 0 and "0 already classified in" in r.stderr and "1 to go" in r.stderr
    labels = [json.loads(line)["predictions"][0]["label"] for line in out.read_text().splitlines()]
    assert len(labels) == 2
    monkeypatch.chdir(tmp_path / "A")  # the same file again, from where it was first classified: skipped
    r = xc("predict", "imgs", "-o", out, "--resume")
    assert r.exit_code == 0 and "1 already classified" in r.stderr


def test_csv_names_that_print_alike_are_two_files(xc, samples, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    literal = d / "caf\\xe9.jpg"  # a name holding a backslash, an x, an e and a 9
    raw = os.path.join(os.fsencode(d), b"caf\xe9.jpg")  # a name holding the byte 0xE9
    shutil.copy(samples[0], literal)
    shutil.copy(samples[1], raw)
    out = tmp_path / "labels.csv"
    assert xc("predict", literal, "-o", out, "-k", "1").exit_code == 0
    r = xc("predict", d, "-o", out, "-k", "1", "--resume")
    assert r.exit_code == 0 and "1 already classified" in r.stderr and "1 to go" in r.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    assert len(rows) == 2 and rows[0]["path"] == rows[1]["path"]  # printed alike, both classified
    assert rows[0]["file_id"] != rows[1]["file_id"]


def test_a_shard_folder_of_another_k_is_refused_before_ray_starts(xc, photos, tmp_path, monkeypatch):
    import xception_cli.scale.executor as executor
    from xception_cli.labels import Prediction
    from xception_cli.output.resume import Expect
    from xception_cli.output.shards import ShardOutput
    from xception_cli.pipeline import Record

    w = ShardOutput(str(tmp_path / "out"), "jsonl", Expect("predictions", labels=2)).writer()
    w.write([Record(str(photos / "cat.jpg"), predictions=[Prediction(r, r, "n0", "x", 0.1) for r in (1, 2)])])
    w.close()
    before = sorted(os.listdir(tmp_path / "out"))
    monkeypatch.setattr(executor, "init_ray", lambda *a, **k: pytest.fail("Ray was started"))
    r = xc("predict", photos, "--ray", "-o", f"{tmp_path}/out/", "-k", "5")
    assert r.exit_code == 2 and "holds 2 label(s) per image; this run gives 5" in r.stderr
    assert sorted(os.listdir(tmp_path / "out")) == before


# Whole files: published, or nothing -----------------------------------------------------------

def xception(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "xception_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_full_disk_leaves_no_npz_and_says_nothing_was_written(weights_file, photos, tmp_path):
    import resource

    out = tmp_path / "new.npz"

    def small_files():  # writes past 16 KB fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    p = xception("embed", photos, "-o", out, "--weights", weights_file, preexec_fn=small_files)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2, err
    assert "nothing was written" in err and "kept" not in err
    assert not out.exists() and leftovers(tmp_path, "new.npz") == []


def test_a_killed_first_embed_leaves_no_empty_npz(weights_file, photos, tmp_path):
    out = tmp_path / "x.npz"
    p = xception("embed", photos, "-o", out, "--weights", weights_file)
    deadline = time.monotonic() + 120
    while not glob.glob(str(tmp_path / ".x.npz.xception-*")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert not out.exists()
    # the next run cleans what the killed one left and writes the file
    r = CliRunner().invoke(cli, ["embed", str(photos), "-o", str(out), "--weights", str(weights_file)])
    assert r.exit_code == 0 and np.load(out)["embeddings"].shape == (4, 2048)
    assert leftovers(tmp_path, "x.npz") == []


def test_a_missing_parquet_extra_leaves_no_file(weights_file, photos, tmp_path):
    out = tmp_path / "e.parquet"
    code = ("import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
            "from xception_cli.cli import main\n"
            f"sys.argv = ['xception', 'embed', {str(photos)!r}, '-o', {str(out)!r}, "
            f"'--weights', {str(weights_file)!r}]\n"
            "main()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "pip install 'xception-cli[parquet]'" in p.stderr
    assert not out.exists() and leftovers(tmp_path, "e.parquet") == []


# Names are data in messages; formats are never guessed silently -------------------------------

def test_a_newline_in_a_file_name_cannot_fake_a_log_line(xc, photos, tmp_path):
    (photos / "x\nwarning: all good.jpg").write_bytes(b"not an image")
    r = xc("predict", photos, "-o", tmp_path / "labels.jsonl")
    assert r.exit_code == 1
    assert not [line for line in r.stderr.splitlines() if line.startswith("warning: all good")]
    assert "x\\nwarning: all good.jpg" in r.stderr


def test_an_extension_no_format_owns_is_refused(xc, photos, tmp_path):
    r = xc("predict", photos, "-o", tmp_path / "report.pdf")
    assert r.exit_code == 2 and "no output format is written as .pdf files" in r.stderr
    assert not (tmp_path / "report.pdf").exists()


def test_similar_says_which_stored_vectors_cannot_match(tmp_path):
    from xception_cli.output.arrays import EmbeddingTable

    v = np.random.default_rng(0).random((4, 8), np.float32)
    v[1] = 0
    v[2, 3] = np.nan
    table = EmbeddingTable([str(tmp_path / f"{i}.jpg") for i in range(4)], list(v), meta={"pooling": "avg"})
    (tmp_path / "lib.npz").write_bytes(table.to_bytes("npz"))
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(tmp_path / "lib.npz"), "-f", "jsonl"])
    assert r.exit_code == 0, r.stderr
    assert "2 stored embedding(s) are zero or not finite" in r.stderr and "1.jpg" in r.stderr


def test_a_name_as_long_as_the_file_system_allows_is_still_published(tmp_path):
    from xception_cli.output.target import write_bytes

    final = tmp_path / ("n" * 250 + ".npz")
    write_bytes(str(final), b"first")
    write_bytes(str(final), b"second")
    assert final.read_bytes() == b"second" and os.listdir(tmp_path) == [final.name]


def test_links_planted_at_an_exports_companion_names_are_replaced_never_followed(weights_file, tmp_path):
    names = ("m.bin", "m.xml.meta.json")
    for name in names:
        (tmp_path / f"victim-{name}").write_text(f"{name} victim\n")
        os.symlink(tmp_path / f"victim-{name}", tmp_path / name)
    r = CliRunner().invoke(cli, ["export", "openvino", "--weights", str(weights_file), "-o", str(tmp_path / "m.xml")])
    assert r.exit_code == 0, r.stderr
    for name in names:
        assert (tmp_path / f"victim-{name}").read_text() == f"{name} victim\n"
        assert not os.path.islink(tmp_path / name) and (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "m.xml.meta.json").read_text())["format"] == "openvino"


# Found by trying to break the layer as a user would ---------------------------------------------

def test_an_exports_metadata_is_protected_as_the_weights(xc, weights_file, photos, tmp_path):
    ir = tmp_path / "m.xml"
    assert CliRunner().invoke(cli, ["export", "openvino", "--weights", str(weights_file), "-o", str(ir)]).exit_code == 0
    meta = tmp_path / "m.xml.meta.json"
    before = meta.read_bytes()
    r = CliRunner().invoke(cli, ["predict", str(photos / "cat.jpg"), "--weights", str(ir), "-o", str(meta),
                                 "-f", "jsonl"])
    assert r.exit_code == 2 and "is the weights file" in r.stderr and meta.read_bytes() == before


@pytest.mark.parametrize("text", ['{"config": "precious"}\n', '{"config": "precious"}',
                                  '{"path": "a.jpg", "predictions": [{"rank": 1}]}\nnot json at all\n'])
def test_resume_never_rewrites_a_file_that_is_not_this_tools(xc, photos, tmp_path, text):
    out = tmp_path / "notes.jsonl"
    out.write_text(text)
    r = xc("predict", photos / "cat.jpg", "-o", out, "--resume")
    assert r.exit_code == 2 and "is not a record of xception predict" in r.stderr and "refusing" in r.stderr
    assert out.read_text() == text


def test_ctrl_c_keeps_a_complete_earlier_npz(xc, photos, tmp_path, monkeypatch):
    from xception_cli.jobs import LocalExecutor

    out = tmp_path / "lib.npz"
    assert xc("embed", photos, "-o", out).exit_code == 0
    before = out.read_bytes()
    real = LocalExecutor.batches

    def one_batch_then_ctrl_c(self):
        for batch in real(self):
            yield batch[:1]
            raise KeyboardInterrupt

    monkeypatch.setattr(LocalExecutor, "batches", one_batch_then_ctrl_c)
    r = xc("embed", photos, "-o", out)
    assert r.exit_code == 130 and f"{out} is as it was" in r.stderr
    assert out.read_bytes() == before
    r = xc("embed", photos, "-o", tmp_path / "new.npz")  # no earlier file: what was done is kept
    assert r.exit_code == 130 and len(np.load(tmp_path / "new.npz")["paths"]) == 1


def test_embeddings_resume_judges_the_weights_by_their_contents(weights_file, photos, tmp_path):
    from xception_cli.synthetic import make_weights_file

    w = tmp_path / "w.h5"
    shutil.copy(weights_file, w)
    os.symlink(w, tmp_path / "link.h5")
    out = tmp_path / "s.npz"

    def embed(inputs, weights):
        return CliRunner().invoke(cli, ["embed", str(inputs), "-o", str(out), "--resume", "--weights", str(weights)])

    assert embed(photos / "cat.jpg", w).exit_code == 0
    assert embed(photos / "rocket.jpg", tmp_path / "link.h5").exit_code == 0  # the same file by another name
    make_weights_file(w, [photos / "cat.jpg"], seed=3)  # another network under the same name
    r = embed(photos, w)
    assert r.exit_code == 2 and "holds results made with other options weights=" in r.stderr
    assert len(np.load(out)["paths"]) == 2


def test_dev_stdout_appends_where_the_shell_said(weights_file, photos, tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("hello\n")
    with open(log, "a") as f:
        p = subprocess.run([sys.executable, "-m", "xception_cli", "predict", str(photos / "cat.jpg"), "-o",
                            "/dev/stdout", "-f", "jsonl", "--weights", str(weights_file)], stdout=f,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "hello" and json.loads(lines[1])["path"].endswith("cat.jpg")
    p = subprocess.run(f"{sys.executable} -m xception_cli summary -f json -o /dev/stdout | head -c 200",
                       shell=True, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.startswith("{") and "Error" not in p.stderr


def test_a_killed_rewrite_leaves_nothing_behind_and_its_copy_is_put_back(xc, photos, tmp_path):
    out = tmp_path / "labels.jsonl"
    assert xc("predict", photos, "-o", out).exit_code == 0
    good = out.read_bytes()
    (tmp_path / ".labels.jsonl.k1ll3d.xception-tmp").write_bytes(b"half a rewrite")
    (tmp_path / ".labels.jsonl.k1ll3d.xception-part").write_bytes(b"half a copy")
    (tmp_path / ".labels.jsonl.k1ll3d.xception-backup").write_bytes(good)  # complete, by construction
    out.write_bytes(good[:-40])  # the in-place rewrite was cut short
    r = xc("predict", photos, "-o", out, "--resume")
    assert r.exit_code == 0 and "4 already classified" in r.stderr
    assert out.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["imgs", "labels.jsonl"]


def test_a_rewrite_keeps_the_files_group(xc, photos, tmp_path):
    import grp

    other = next((g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid()), None)
    if other is None or os.getuid() != 0:
        pytest.skip("needs another group this user may give")
    report = tmp_path / "s.json"
    report.write_text("{}")
    os.chown(report, -1, other)
    assert CliRunner().invoke(cli, ["summary", "-f", "json", "-o", str(report)]).exit_code == 0
    assert report.stat().st_gid == other and json.loads(report.read_text())["model"] == "xception"


def test_a_link_in_a_shard_folder_is_never_followed(tmp_path):
    from xception_cli.labels import Prediction
    from xception_cli.output.resume import Expect
    from xception_cli.output.shards import ShardOutput
    from xception_cli.pipeline import Record

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    w = ShardOutput(str(out), "jsonl", Expect("predictions", labels=1)).writer()
    w.write([Record("/x/a.jpg", predictions=[Prediction(1, 1, "n0", "x", 0.5)]), Record("/x/b.jpg", error="bad")])
    w.close()
    (name,) = os.listdir(out)
    elsewhere.mkdir()
    os.replace(out / name, elsewhere / name)
    os.symlink(elsewhere / name, out / name)
    before = (elsewhere / name).read_bytes()
    warned = []
    done = ShardOutput(str(out), "jsonl", Expect("predictions", labels=1), warn=warned.append).done
    assert "/x/a.jpg" not in done and (elsewhere / name).read_bytes() == before
    assert len(warned) == 1 and "a link, not a shard" in warned[0]


def test_full_disk_messages_say_what_is_on_disk(weights_file, photos, tmp_path):
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    earlier = tmp_path / "old.npz"
    earlier.write_bytes(b"PK\x03\x04 an earlier file")
    p = xception("embed", photos, "-o", earlier, "--weights", weights_file, preexec_fn=small_files)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "results so far" not in err and f"{earlier} is as it was" in err
    assert earlier.read_bytes() == b"PK\x03\x04 an earlier file"
    report = tmp_path / "s.json"
    p = xception("summary", "-f", "json", "-o", report, preexec_fn=small_files)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and err.strip().splitlines()[-1] == f"Error: {report}: cannot write: file too large"


def test_wrong_way_round_resumes_say_what_the_file_holds(xc, photos, tmp_path):
    out = tmp_path / "e.npz"
    assert xc("embed", photos / "cat.jpg", "-o", out).exit_code == 0
    r = xc("predict", photos, "-o", out, "--resume", "-f", "jsonl")
    assert r.exit_code == 2 and "holds xception embed output (npz), which predict cannot continue" in r.stderr
    r = xc("predict", photos, "-o", f"{tmp_path}/nothing/")
    assert r.exit_code == 2 and "-o DIR/ writes Ray's shards (with --ray)" in r.stderr


@pytest.mark.parametrize("change", [["--weights", "none"], ["--resize", "squash"], ["--precision", "bfloat16"]])
def test_predict_resume_refuses_labels_made_otherwise(weights_file, photos, tmp_path, change):
    out = tmp_path / "labels.jsonl"
    base = ["predict", "-o", str(out), "--runtime", "tensorflow"]
    assert CliRunner().invoke(cli, [*base, str(photos / "cat.jpg"), "--weights", str(weights_file)]).exit_code == 0
    before = out.read_bytes()
    args = [*base, str(photos), "--resume", "--weights", str(weights_file), *change]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "holds results made with other options" in r.stderr and change[0][2:] in r.stderr
    assert out.read_bytes() == before
    r = CliRunner().invoke(cli, [*base, str(photos), "--resume", "--weights", str(weights_file)])
    assert r.exit_code == 0 and "1 already classified" in r.stderr


@pytest.mark.parametrize(("name", "sig"), [("t.jsonl", signal.SIGTERM), ("s.npz", signal.SIGHUP)])
def test_terminated_like_ctrl_c_leaves_nothing(weights_file, photos, tmp_path, name, sig):
    out = tmp_path / name
    command = "predict" if name.endswith(".jsonl") else "embed"
    p = xception(command, photos, "-o", out, "--weights", weights_file)
    deadline = time.monotonic() + 120
    while not glob.glob(str(tmp_path / f".{name}.xception-*")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert not out.exists() and leftovers(tmp_path, name) == []


def test_reports_take_their_format_by_the_same_rules(tmp_path):
    for name in ("s.pdf", "s.jsonl", "s.html"):
        r = CliRunner().invoke(cli, ["summary", "-o", str(tmp_path / name)])
        assert r.exit_code == 2 and not (tmp_path / name).exists()
    assert "no output format is written as .pdf files" in CliRunner().invoke(
        cli, ["summary", "-o", str(tmp_path / "s.pdf")]).stderr
    assert "summary writes table (.txt), json (.json), csv (.csv), not jsonl" in CliRunner().invoke(
        cli, ["summary", "-o", str(tmp_path / "s.jsonl")]).stderr
    r = CliRunner().invoke(cli, ["summary", "-o", str(tmp_path / "s.txt")])
    assert r.exit_code == 0 and "14 blocks" in (tmp_path / "s.txt").read_text()
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(tmp_path / "none.npz"),
                                 "-o", str(tmp_path / "dup.csv")])
    assert r.exit_code == 2 and "similar writes table (.txt), jsonl (.jsonl), html (.html), not csv" in r.stderr
