"""Reports written with ``-o`` (``summary``, ``benchmark``) go through the same output layer as an
export: a link planted at any name near the target is never followed, and a run that fails
leaves the earlier report as it was."""

import json
import os

from click.testing import CliRunner

from xception_cli.cli import cli

NEAR = ["r.json.tmp", ".r.json.tmp", "r.json.part", ".r.json.part", "r.json~", "r.json.resume-tmp",
        "r.json.resume-backup", ".r.json.xception-planted"]


def test_links_planted_near_a_report_are_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    (victim_dir / "keep.txt").write_text("precious")
    for name in NEAR:
        (tmp_path / name).symlink_to(victim_dir if "xception" in name else victim)
    stale = tmp_path / ".r.json.xception-stale"  # looks like a killed run's staging folder, its lock a link
    stale.mkdir()
    (stale / "lock").symlink_to(victim)
    out = tmp_path / "r.json"
    out.write_text("earlier report")
    r = CliRunner().invoke(cli, ["summary", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert not out.is_symlink() and json.loads(out.read_text())
    assert victim.read_text() == "precious" and os.listdir(victim_dir) == ["keep.txt"]
    assert (victim_dir / "keep.txt").read_text() == "precious"
    assert all((tmp_path / name).is_symlink() for name in NEAR) and os.readlink(stale / "lock") == str(victim)


def test_a_failed_benchmark_leaves_the_earlier_report(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("earlier report")
    broken = tmp_path / "broken.h5"
    broken.write_text("not weights")
    r = CliRunner().invoke(cli, ["benchmark", "-b", "1", "-n", "1", "--warmup", "0", "--weights", str(broken),
                                 "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert out.read_text() == "earlier report"
    assert sorted(os.listdir(tmp_path)) == ["broken.h5", "r.json"]
