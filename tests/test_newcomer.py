"""What a new user met: quiet by default, loud on request (-q/-v), --ray like a local run, an
empty list on stdin, embed on the file with the top, TensorFlow's start-up lines, the logging
bridge, environment variables in --help, shell completion."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from xception_cli import logs
from xception_cli.cli import cli
from xception_cli.cli.common import epoch_line_due
from xception_cli.config import WeightsFile

XCEPTION = [sys.executable, "-m", "xception_cli"]
TF_LINES = re.compile(r"absl|oneDNN|cuda|cuInit|cpu_feature_guard|^[IWE]0000 ", re.I | re.M)
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def env_for(tmp_path: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_") and k not in ("XCEPTION_DEBUG", "TF_CPP_MIN_LOG_LEVEL")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), **extra)
    return env


def on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 240) -> tuple[int, str]:
    """``args`` run with stdin, stdout and stderr on a pseudo-terminal: (exit status, all it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec or leave at once
        try:
            os.execvpe(args[0], args, env)
        finally:
            os._exit(127)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        else:
            os.kill(pid, 9)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


# -- --ray on a terminal --------------------------------------------------------------------------


def test_ray_on_a_terminal_draws_the_bar_and_the_table_and_says_nothing_of_rays(samples, weights_file, tmp_path):
    pytest.importorskip("ray")
    short = Path(tempfile.mkdtemp(prefix="xt-", dir="/tmp" if os.path.isdir("/tmp") else None))  # Ray's sockets
    try:
        env = env_for(tmp_path, TMPDIR=str(short), XCEPTION_WEIGHTS=str(weights_file), COLUMNS="100")
        code, out = on_a_terminal([*XCEPTION, "predict", *map(str, samples), "--ray", "-k", "2"], env)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    text = ESCAPES.sub("", out)
    assert code == 0, text
    assert re.search(r"classifying .* [0-4]/4", text), text  # the job's own progress bar
    assert "Image" in text and "Probability" in text and samples[0].name in text  # the table
    assert re.search(r"classified 4, failed 0 in [\d.]+ s on Ray \(1 actor\(s\) on 1 node\(s\); ", text), text
    for said_by_ray in (" INFO ", "progress UI", "DataContext", "Started a local Ray", "ray.init", "Running Dataset"):
        assert said_by_ray not in text, text


# -- stdin, -q ----------------------------------------------------------------------------------


def test_an_empty_list_on_stdin_is_nothing_to_do(tmp_path):
    out = tmp_path / "new.jsonl"
    for command in (["predict", "-", "-o", str(out)], ["embed", "-", "-o", str(tmp_path / "new.npz")]):
        r = CliRunner().invoke(cli, command, input="")
        assert r.exit_code == 0, r.output
        assert r.stderr == "no paths on stdin: nothing to do\n" and r.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_quiet_says_nothing_but_errors(samples, weights_file, tmp_path):
    photos = [str(p) for p in samples]
    loud = CliRunner().invoke(cli, ["predict", *photos, "--weights", str(weights_file), "-f", "jsonl"])
    assert loud.exit_code == 0 and "classified 4" in loud.stderr  # what -q leaves out
    for args in (["predict", "-q", *photos], ["-q", "predict", *photos]):  # the command's or the group's
        r = CliRunner().invoke(cli, [*args, "--weights", str(weights_file), "-f", "jsonl"])
        assert r.exit_code == 0 and r.stderr == ""
        assert [json.loads(line)["path"] for line in r.stdout.splitlines()] == photos
    r = CliRunner().invoke(cli, ["predict", "-q", photos[0], "--weights", "none", "-f", "jsonl"])
    assert r.exit_code == 0 and r.stderr == ""  # not even the note that random labels mean nothing
    r = CliRunner().invoke(cli, ["predict", "-q", str(tmp_path / "gone.jpg"), "--weights", str(weights_file)])
    assert r.exit_code == 2 and r.stderr == f"Error: {tmp_path / 'gone.jpg'}: no such file or directory\n"
    r = CliRunner().invoke(cli, ["summary", "-q", "-v"])
    assert r.exit_code == 2 and "-q (only errors) and -v (more than usual) cannot go together" in r.stderr
    assert logs.level() == logs.NORMAL  # a run's -q is not the next one's


def test_every_command_has_q_and_v_and_help_names_the_environment():
    for name, command in cli.commands.items():
        options = {o for p in command.params for o in p.opts}
        assert {"-q", "--quiet", "-v", "--verbose"} <= options, name
    r = CliRunner().invoke(cli, ["predict", "-h"], terminal_width=200)
    for name in ("XCEPTION_WEIGHTS", "XCEPTION_RUNTIME", "RAY_ADDRESS", "XCEPTION_DEBUG", "-q, --quiet",
                 "-v, --verbose"):
        assert name in r.stdout, name
    r = CliRunner().invoke(cli, ["-h"], terminal_width=200)
    for name in ("XCEPTION_WEIGHTS", "XCEPTION_RUNTIME", "KERAS_HOME", "RAY_ADDRESS", "XCEPTION_DEBUG",
                 "_XCEPTION_COMPLETE=bash_source xception"):
        assert name in r.stdout, name
    assert "'none' for random weights (meaningless labels" in " ".join(
        CliRunner().invoke(cli, ["embed", "-h"], terminal_width=200).stdout.split())


def test_shell_completion_as_the_help_says(tmp_path):
    env = env_for(tmp_path, _XCEPTION_COMPLETE="bash_source")
    r = subprocess.run(XCEPTION, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == ""
    assert "complete -o nosort -F _xception_completion xception" in r.stdout
    env.update(_XCEPTION_COMPLETE="bash_complete", COMP_WORDS="xception pre", COMP_CWORD="1")
    r = subprocess.run(XCEPTION, env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["plain,predict"]
    env.update(COMP_WORDS="xception predict --qu", COMP_CWORD="2")
    r = subprocess.run(XCEPTION, env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["plain,--quiet"]


# -- embed on the file with the top ----------------------------------------------------------------


def without_top(top: Path, dest: Path) -> Path:
    """The same weights in the official no-top layout (the classifier's layers left out)."""
    shutil.copy(top, dest)
    with h5py.File(dest, "r+") as f:
        names = [n for n in f.attrs["layer_names"] if (n.decode() if isinstance(n, bytes) else n)
                 not in ("avg_pool", "predictions")]
        for gone in ("avg_pool", "predictions"):
            if gone in f:
                del f[gone]
        f.attrs["layer_names"] = np.array([n if isinstance(n, bytes) else n.encode() for n in names])
    return dest


def test_embed_uses_the_file_with_the_top_when_that_is_what_the_cache_holds(weights_file, samples, tmp_path,
                                                                           monkeypatch):
    from xception_cli import engine
    from xception_cli.weights import md5sum
    from xception_cli.weights import resolve as R

    notop = without_top(weights_file, tmp_path / "notop.h5")
    official = {True: WeightsFile("xception_weights_tf_dim_ordering_tf_kernels.h5", md5sum(weights_file)),
                False: WeightsFile("xception_weights_tf_dim_ordering_tf_kernels_notop.h5", md5sum(notop))}
    monkeypatch.setattr(R, "official_file", lambda include_top=True: official[include_top])
    monkeypatch.setattr(R, "_urlopen", lambda url, timeout: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    monkeypatch.delenv("XCEPTION_WEIGHTS", raising=False)
    vectors = {}
    for which, source in (("top", weights_file), ("notop", notop)):
        home = tmp_path / which
        (home / "models").mkdir(parents=True)
        shutil.copy(source, home / "models" / official[which == "top"].filename)  # the only file there
        monkeypatch.setenv("KERAS_HOME", str(home))
        monkeypatch.setattr(engine, "_ENGINES", {})  # the network built again, from this cache
        r = CliRunner().invoke(cli, ["embed", *map(str, samples[:2]), "-f", "jsonl"])
        assert r.exit_code == 0, r.output
        assert "download" not in r.stderr
        vectors[which] = np.array([json.loads(line)["embedding"] for line in r.stdout.splitlines()])
    assert vectors["top"].shape == (2, 2048)
    np.testing.assert_allclose(vectors["top"], vectors["notop"], rtol=1e-5, atol=1e-6)


# -- what the user is told ------------------------------------------------------------------------


def test_offline_and_format_errors_say_what_to_try(tmp_path, monkeypatch, samples):
    from xception_cli import weights as W
    from xception_cli.weights import resolve as R

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("XCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(R, "_urlopen", lambda url, timeout: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    with pytest.raises(W.WeightsError, match=r"try the tool with --weights none"):
        W.resolve_weights("imagenet")
    onnx = tmp_path / "x.onnx"
    onnx.write_bytes(b"\x08\x07onnx")
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(onnx)])
    assert r.exit_code == 2 and ".keras, or an OpenVINO IR .xml" in r.stderr


def test_train_piped_prints_a_few_epoch_lines_and_every_one_with_v():
    assert [e for e in range(1, 41) if epoch_line_due(e, 40)] == [1, 10, 20, 30, 40]
    assert [e for e in range(1, 4) if epoch_line_due(e, 3)] == [1, 2, 3]
    before = logs.set_level(logs.VERBOSE)
    try:
        assert all(epoch_line_due(e, 40) for e in range(1, 41))
    finally:
        logs.set_level(before)


def test_tensorflow_says_nothing_whatever_tf_cpp_min_log_level_unless_v(samples, weights_file, tmp_path):
    args = [*XCEPTION, "predict", str(samples[0]), "--runtime", "tensorflow", "--weights", str(weights_file), "-f",
            "jsonl"]
    loud = subprocess.run([*args, "-v"], env=env_for(tmp_path, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
                          text=True, timeout=300)
    assert loud.returncode == 0, loud.stderr
    if not TF_LINES.search(loud.stderr):
        pytest.skip("this TensorFlow says nothing at start-up here, even with -v")
    for level in ("3", None):  # a user's TF_CPP_MIN_LOG_LEVEL=3, and none set
        env = env_for(tmp_path, **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {}))
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
        assert r.stderr == "", (level, r.stderr)


# -- the logging bridge -----------------------------------------------------------------------------


def test_a_programs_warnings_come_through_logging(samples, weights_file, tmp_path, caplog):
    from xception_cli import PredictJob, PredictOptions

    missing = str(tmp_path / "gone.jpg")
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="xception_cli"):
        code = PredictJob(PredictOptions(inputs=[str(samples[0]), missing], weights=str(weights_file), fmt="jsonl"),
                          stdout=out).run()
    assert code == 1 and len(out.getvalue().splitlines()) == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "xception_cli" and r.levelno == logging.WARNING]
    assert warnings == [f"{missing}: no such file or directory"]
    assert any(r.getMessage().startswith("classified 1, failed 1") for r in caplog.records if r.levelno == logging.INFO)


def test_the_command_line_shows_the_loggers_records_on_stderr(samples, weights_file, monkeypatch):
    from xception_cli import jobs

    inputs = jobs.PredictJob._inputs

    def noisy(self):
        logs.logger.warning("a note from the library")
        return inputs(self)

    monkeypatch.setattr(jobs.PredictJob, "_inputs", noisy)
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(weights_file), "-f", "jsonl"])
    assert r.exit_code == 0 and r.stderr.splitlines()[0] == "warning: a note from the library"
    r = CliRunner().invoke(cli, ["predict", "-q", str(samples[0]), "--weights", str(weights_file), "-f", "jsonl"])
    assert r.exit_code == 0 and r.stderr == ""


def test_ctrl_c_while_loading_takes_the_uis_live_displays_away(samples, tmp_path, monkeypatch):
    from xception_cli import jobs
    from xception_cli.ui import QuietUI

    class UI(QuietUI):
        stopped = 0
        notes: list = []

        def info(self, message):
            self.notes.append(message)

        def stop(self):
            self.stopped += 1

    def interrupted(self, items):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs.LocalExecutor, "load", interrupted)
    ui = UI()
    code = jobs.PredictJob(jobs.PredictOptions(inputs=[str(samples[0])], fmt="jsonl", weights="none"), ui,
                           stdout=io.StringIO()).run()
    assert code == 130 and ui.stopped == 1
    assert ui.notes[0] == "note: --weights none: random weights, so the labels mean nothing (to try the tool)"


def test_a_failure_on_ray_is_told_by_its_remote_error():
    from xception_cli.scale.executor import remote_error

    class ActorDiedError(Exception):  # as Ray's: the remote traceback in error_msg
        error_msg = ("The actor died because of an error raised in its creation task\nTraceback (most recent call "
                     "last):\n  File \"stages.py\", line 73, in __init__\nWeightsError: w.h5: weights file not found")

    try:
        try:
            raise ActorDiedError("the actor died")
        except ActorDiedError as e:
            raise RuntimeError("iteration failed") from e
    except RuntimeError as e:
        assert remote_error(e) == "WeightsError: w.h5: weights file not found"
    assert remote_error(ValueError("no traceback here")) is None
