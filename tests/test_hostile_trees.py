"""Trees and folders another user could have made: a folder thousands of levels deep, folders full
of links to themselves, and links planted in a shared folder (``/tmp``) at the name given to -o.
Each is a defect a red-team review hit (review 18: findings 8, 9 and 10)."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from xception_cli import discovery
from xception_cli.cli import cli
from xception_cli.discovery import discover, glob_paths
from xception_cli.errors import OutputError
from xception_cli.output.files import RecordsOutput
from xception_cli.output.resume import Expect
from xception_cli.output.shards import ShardOutput
from xception_cli.output.target import Publication, publish_text, write_bytes

OTHER = 12345  # another user's uid (links given away with lchown: tests run as root)


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# a tree deeper than Python's recursion limit --------------------------------------------------

def deep_tree(top, levels, photo):
    """``top/a/a/.../a/x.jpg``, ``levels`` folders deep (made by descriptor: no long paths)."""
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("a", dir_fd=fd)
            fd, up = os.open("a", os.O_RDONLY, dir_fd=fd), fd
            os.close(up)
        with open(os.open("x.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(photo.read_bytes())
    finally:
        os.close(fd)
    return os.path.join(top, *["a"] * levels, "x.jpg")


# The tree is deeper than the recursion limit the child process runs with (LIMIT), and shallower than
# the 1000 frames pytest's own clean-up of old temporary folders needs (a tree left behind by an
# interrupted run must not break later runs).
DEPTH, LIMIT = 400, 200


@pytest.fixture(scope="module")
def deep(tmp_path_factory, samples):
    top = str(tmp_path_factory.mktemp("deep") / "d")
    photo = deep_tree(top, DEPTH, samples[0])
    return top, photo


def in_child(code: str, *args) -> subprocess.CompletedProcess:
    """``code`` in a Python whose recursion limit is ``LIMIT`` frames (a tree of ``DEPTH`` levels is
    past it, as a tree of thousands of levels is past the usual limit)."""
    prelude = f"import sys\nsys.setrecursionlimit({LIMIT})\n"
    return subprocess.run([sys.executable, "-c", prelude + code, *args], capture_output=True, text=True,
                          timeout=300)


def test_a_folder_deeper_than_the_recursion_limit_is_walked_and_globbed(deep):
    top, photo = deep
    r = in_child("import json\nfrom xception_cli.discovery import discover, glob_paths\n"
                 "top = sys.argv[1]\n"
                 "print(json.dumps([discover([top]).paths, glob_paths(top + '/**/*.jpg'), "
                 "discover([top + '/**/']).paths]))", top)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == [[photo]] * 3  # '**/' matches 401 folders: the first walk finds it all


def test_predict_classifies_the_photo_at_the_bottom(deep, weights_file):
    top, photo = deep
    r = in_child("from xception_cli.cli import main\nsys.argv = ['xception', *sys.argv[1:]]\nmain()",
                 "predict", f"{top}/**/*.jpg", "--weights", str(weights_file), "-f", "jsonl", "-k", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    (rec,) = jsonl(r.stdout)
    assert rec["path"] == photo and rec["predictions"][0]["rank"] == 1 and "error" not in rec


# wildcard levels over folders of links to themselves ------------------------------------------

@pytest.fixture
def looped(tmp_path):
    """``d`` with 8 links to itself, and a real chain ``d/s1/s2/s3/s4/s5`` holding one photo per
    level, whose middle folder has links to itself and to its parent."""
    d = tmp_path / "d"
    real = d / "s1" / "s2" / "s3" / "s4" / "s5"
    real.mkdir(parents=True)
    for i in range(1, 9):
        (d / f"l{i}").symlink_to(".")
    (d / "s1" / "s2" / "me").symlink_to(".")
    (d / "s1" / "s2" / "up").symlink_to("..")
    photos = [d / "p0.jpg"]
    for depth in range(1, 6):
        photos.append(d.joinpath(*[f"s{i}" for i in range(1, depth + 1)], f"p{depth}.jpg"))
    for p in photos:
        p.write_bytes(b"jpeg")
    return d, [str(p) for p in photos]


@pytest.fixture
def listings(monkeypatch):
    """How many folders the globbing lists (9 ** levels, before a loop guard on every level)."""
    count, real = [0], os.scandir

    def counted(path="."):
        count[0] += 1
        return real(path)

    monkeypatch.setattr(discovery.os, "scandir", counted)
    return count


@pytest.mark.parametrize("follow", [False, True])
def test_explicit_wildcard_levels_never_go_round_a_loop(looped, listings, follow):
    d, photos = looped
    for depth, photo in enumerate(photos):
        assert glob_paths(os.path.join(str(d), *["*"] * depth, "*.jpg"), follow) == [photo]
    assert glob_paths(os.path.join(str(d), *["*"] * 11, "*.jpg"), follow) == []
    assert listings[0] < 60  # each real folder listed a few times, never 8 ** levels
    assert discover([os.path.join(str(d), *["*"] * 6)], follow).paths == [photos[5]]
    assert discover([os.path.join(str(d), *["*"] * 7)], follow).problems  # nothing 7 levels down: said
    assert discover([os.path.join(str(d), "*", "*", "*.jpg"), f"{d}/**/*.jpg"], follow).paths == \
        [photos[2], photos[0], photos[1], *photos[3:]]  # each photo once, in the order given


def test_links_inside_a_tree_that_make_no_loop_are_matched_as_before(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "x.jpg").write_bytes(b"jpeg")
    (d / "alias").symlink_to("sub")
    (d / "sub" / "self").symlink_to(".")
    (tmp_path / "out").mkdir()
    (d / "away").symlink_to(tmp_path / "out")
    assert glob_paths(f"{d}/*/*.jpg") == [f"{d}/alias/x.jpg", f"{d}/sub/x.jpg"]  # both names, as glob.glob
    assert glob_paths(f"{d}/*/../sub/x.jpg") == [f"{d}/alias/../sub/x.jpg", f"{d}/sub/../sub/x.jpg"]
    assert f"{d}/sub/../sub/x.jpg" in glob_paths(f"{d}/*/../**/*.jpg")  # '..' goes up by name, not round a loop
    skipped = []
    assert glob_paths(f"{d}/*/", skipped=skipped) == [f"{d}/alias/", f"{d}/sub/"] and skipped == [f"{d}/away"]


# links planted in a shared folder at the name given to -o -------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a link to another user takes root")


@pytest.fixture
def shared(tmp_path):
    """A sticky, world-writable folder (``/tmp``'s kind), and a victim file outside it."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return folder, victim


def plant(link, target, owner=OTHER):
    os.symlink(target, link)
    os.lchown(link, owner, -1)
    return link


def refused(do, victim):
    with pytest.raises(OutputError) as e:
        do()
    assert victim.read_text() == "precious\n"
    message = str(e.value)
    assert "\n" not in message and "another user (uid 12345)" in message and "shared folder" in message
    return message


@needs_root
def test_every_kind_of_output_refuses_a_planted_link(shared, tmp_path):
    folder, victim = shared
    expect = Expect("predictions", labels=1)
    for name in ("o.jsonl", "o.csv", "o.json", "o.npz", "rep.json", "m.h5", "ir.xml"):
        plant(folder / name, victim)
    msg = refused(lambda: RecordsOutput(str(folder / "o.jsonl"), "jsonl", expect=expect), victim)  # records
    assert msg.startswith(f"{folder}/o.jsonl: is a link another user") and "choose another -o" in msg
    refused(lambda: RecordsOutput(str(folder / "o.csv"), "csv", expect=expect, resume=True), victim)
    refused(lambda: RecordsOutput(str(folder / "o.json"), "json", expect=expect), victim)
    refused(lambda: RecordsOutput(str(folder / "o.npz"), "npz", expect=Expect("embedding")), victim)
    refused(lambda: write_bytes(str(folder / "rep.json"), b"{}"), victim)  # whole files: shards, exports
    refused(lambda: publish_text(str(folder / "rep.json")), victim)  # reports
    with Publication(option="--output") as pub:  # train's model, export's IR
        assert "--output" in refused(lambda: pub.stage(folder / "m.h5"), victim)
        refused(lambda: pub.stage(folder / "ir.xml"), victim)
    assert sorted(os.listdir(folder)) == ["ir.xml", "m.h5", "o.csv", "o.json", "o.jsonl", "o.npz", "rep.json"]


@needs_root
def test_a_planted_link_on_the_way_is_refused_too(shared, tmp_path):
    folder, victim = shared
    mine = tmp_path / "mine"
    mine.mkdir()
    plant(folder / "dir", mine)
    msg = refused(lambda: write_bytes(str(folder / "dir" / "o.json"), b"{}"), victim)
    assert f"{folder}/dir on the way is a link" in msg and os.listdir(mine) == []
    refused(lambda: ShardOutput(f"{folder}/dir/", "jsonl", Expect("predictions", labels=1)), victim)  # Ray's shards
    # a link of our own that leads through a planted one
    plant(folder / "theirs.json", victim)
    os.symlink(folder / "theirs.json", tmp_path / "o.json")
    refused(lambda: write_bytes(str(tmp_path / "o.json"), b"{}"), victim)
    relative = tmp_path / "rel"
    relative.mkdir()
    os.symlink(os.path.join(os.pardir, folder.name, "theirs.json"), relative / "o.json")
    refused(lambda: write_bytes(str(relative / "o.json"), b"{}"), victim)


@needs_root
def test_predict_says_so_in_one_line_before_any_work(shared, weights_file, samples):
    folder, victim = shared
    plant(folder / "o.json", victim)
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(weights_file), "-o",
                                 str(folder / "o.json")])
    assert r.exit_code == 2 and r.stdout == "" and victim.read_text() == "precious\n"
    (line,) = r.stderr.strip().splitlines()
    assert "o.json: is a link another user (uid 12345) made in the shared folder" in line
    assert "choose another -o, in a folder of your own" in line


@needs_root
def test_links_the_kernel_would_follow_are_followed_as_before(shared, tmp_path):
    folder, victim = shared
    plant(folder / "mine.json", victim, owner=os.geteuid())  # ours
    write_bytes(str(folder / "mine.json"), b"ours\n")
    assert victim.read_text() == "ours\n" and os.path.islink(folder / "mine.json")  # a link stays a link
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER, -1)
    theirs.chmod(0o1777)
    plant(theirs / "o.json", victim)  # the folder owner's own link
    write_bytes(str(theirs / "o.json"), b"the owner's\n")
    assert victim.read_text() == "the owner's\n"
    private = tmp_path / "private"
    private.mkdir(mode=0o755)
    plant(private / "o.json", victim)  # not a shared folder: nobody else could have put it there
    write_bytes(str(private / "o.json"), b"private\n")
    assert victim.read_text() == "private\n"


@needs_root
def test_a_planted_link_at_a_companions_name_is_still_replaced(shared, tmp_path):
    folder, victim = shared
    plant(folder / "m.h5.report.json", victim)
    with Publication() as pub:
        with open(pub.stage(folder / "m.h5"), "wb") as f:
            f.write(b"model")
        with open(pub.stage(folder / "m.h5.report.json", companion=True), "w") as f:
            f.write("{}")
    assert victim.read_text() == "precious\n" and not os.path.islink(folder / "m.h5.report.json")
    assert (folder / "m.h5.report.json").read_text() == "{}"
