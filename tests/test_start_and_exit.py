"""How a command starts and ends, for speed (issue 20), without changing what it does.

The way out: ``cli.exit_now`` ends the process without the interpreter's teardown
(~0.04 s of freeing every module and object), only after everything a normal exit does that
matters has been done: threads joined, ``atexit`` handlers run (Ray's private folder, log
handlers), stdout and stderr flushed, the exit status kept. Only the command's own process
takes it (the ``xception`` script, ``python -m xception_cli``); a program that calls ``main()``
goes on afterwards. (A ``--ray`` run leaving no Ray folder behind through this path:
tests/test_ray_private.py, which runs ``python -m xception_cli``.)

The way in: the first batch is decoded while the network loads.
"""

import json
import os
import subprocess
import sys
import textwrap


def run(code: str, *args, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered, as in a pipe
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env)


def test_exit_now_does_what_the_interpreter_would_do_first(tmp_path):
    r = run("""
        import atexit, os, sys, threading, time
        from xception_cli.cli import exit_now

        folder = sys.argv[1]
        os.mkdir(os.path.join(folder, "private"))
        atexit.register(lambda: os.rmdir(os.path.join(folder, "private")))  # as Ray's folder is removed
        atexit.register(lambda: sys.stdout.write(" atexit"))

        def late():
            time.sleep(0.3)
            with open(os.path.join(folder, "late.txt"), "w") as f:
                f.write("done")

        threading.Thread(target=late).start()  # not a daemon: waited for, as at a normal exit
        sys.stdout.write("buffered")  # in the buffer still (a pipe): flushed on the way out
        sys.stderr.write("to stderr")

        class Teardown:
            def __del__(self):
                print("teardown", file=sys.stderr)

        keep = Teardown()  # freed only by the interpreter's teardown, which is skipped
        exit_now(3)
        print("never")
    """, tmp_path)
    assert r.returncode == 3, r.stderr
    assert r.stdout == "buffered atexit"
    assert r.stderr == "to stderr"
    assert not (tmp_path / "private").exists()
    assert (tmp_path / "late.txt").read_text() == "done"


def test_exit_now_with_a_message_or_none(tmp_path):
    r = run("from xception_cli.cli import exit_now\nexit_now(None)")
    assert r.returncode == 0 and r.stderr == ""
    r = run("from xception_cli.cli import exit_now\nexit_now('Error: as sys.exit says it')")
    assert r.returncode == 1 and r.stderr.strip() == "Error: as sys.exit says it"


COMMAND = """
    import atexit, sys, types
    sys.modules["__main__"].__spec__ = types.SimpleNamespace(name="xception_cli.__main__")  # python -m xception_cli
    from xception_cli.cli import main

    atexit.register(lambda: print("atexit", file=sys.stderr))

    class Teardown:
        def __del__(self):
            print("teardown", file=sys.stderr)

    keep = Teardown()
    sys.argv = ["xception", *sys.argv[1:]]
    main()
    print("after main")
"""


def test_the_command_ends_with_its_outputs_whole(weights_file, photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"not an image")
    r = run(COMMAND, "predict", photos, "-f", "jsonl", "--weights", weights_file)
    assert r.returncode == 1, r.stderr  # one file failed: the exit status is kept
    records = [json.loads(line) for line in r.stdout.splitlines()]  # stdout whole (a pipe: block-buffered)
    assert [x["path"] for x in records] == sorted(str(p) for p in photos.iterdir())
    assert [x["path"] for x in records if "error" in x] == [str(photos / "broken.jpg")]
    assert "after main" not in r.stdout  # the process ended in main()
    assert r.stderr.splitlines()[-1] == "atexit" and "teardown" not in r.stderr  # handlers run, teardown skipped


def test_a_program_calling_main_goes_on(tmp_path):
    code = ("import sys\nfrom xception_cli.cli import main\n"
            "sys.argv = ['xception', 'predict', sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('went on', e.code)\n")
    r = run(code, tmp_path / "missing.jpg")
    assert r.returncode == 0 and r.stdout.strip() == "went on 2", r.stderr


# Start-up overlapped with decoding -------------------------------------------------------------

def test_the_first_batch_decodes_while_the_network_loads(monkeypatch, photos, tmp_path):
    """A slow network (a fake: 0.8 s to load) and real decoding: every photo of the first batch
    is decoded before the network is ready, so the first inference starts with its batch waiting."""
    import threading
    import time

    import numpy as np

    from xception_cli import engine as engine_module
    from xception_cli import pipeline
    from xception_cli.engine import clear_engines
    from xception_cli.jobs import PredictJob, PredictOptions
    from xception_cli.runtimes import Network
    from xception_cli.ui import QuietUI

    events: dict[str, float] = {}
    decoded: list[float] = []
    lock = threading.Lock()

    def slow_network(spec, runtime, **_):
        events["load_started"] = time.perf_counter()
        time.sleep(0.8)
        events["loaded"] = time.perf_counter()

        def infer(batch):
            events.setdefault("first_inference", time.perf_counter())
            return np.full((len(batch), 1000), 1e-3, np.float32)

        return Network(infer=infer, runtime="openvino", version="fake", precision="float32")

    def load(source, size, resize):
        pixels = pipeline.load_image(source, size, resize)
        with lock:
            decoded.append(time.perf_counter())
        return pixels

    monkeypatch.setattr(engine_module, "load_network", slow_network)
    monkeypatch.setattr(pipeline.Decoder, "load", staticmethod(load))
    clear_engines()
    try:
        out = tmp_path / "labels.jsonl"
        status = PredictJob(PredictOptions([str(photos)], output=str(out), weights="none", runtime="openvino",
                                           batch_size=8), QuietUI()).run()
    finally:
        clear_engines()  # the fake is no other test's engine
    assert status == 0 and len(out.read_text().splitlines()) == len(decoded) == 4
    assert min(decoded) < events["load_started"] + 0.8  # decoding began during the load...
    assert max(decoded) < events["loaded"] < events["first_inference"]  # ...and the whole batch was ready
