"""The compiled-network cache (``usercache``, ``runtimes.cache``): used on the second run, never
after the weights file changes, rebuilt with one warning when corrupt, safe with two writers at
once, never loaded from a place others can write, off with --no-cache, and exact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from xception_cli import usercache
from xception_cli.engine import Engine

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    where = tmp_path / "cache"
    monkeypatch.setenv(usercache.ENV_DIR, str(where))
    monkeypatch.setenv(usercache.ENV_OFF, "0")  # on here, whatever the suite's default (restored after)
    monkeypatch.delenv(usercache.ENV_MAX_MB, raising=False)
    return where


@pytest.fixture(scope="module")
def batch(samples):
    from xception_cli.preprocess import preprocess_image

    return np.stack([preprocess_image(samples[0])])


@pytest.fixture(scope="module")
def template(weights_file, batch, tmp_path_factory):
    """A cache filled once for ``weights_file`` (the network and the file's facts) and the outputs
    of that network on ``batch``: tests that start from a filled cache copy it (no build each)."""
    where = tmp_path_factory.mktemp("template") / "cache"
    with pytest.MonkeyPatch.context() as m:
        m.setenv(usercache.ENV_DIR, str(where))
        m.setenv(usercache.ENV_OFF, "0")
        net = network(weights_file)
        assert net.cache == "stored"
        return where, net.infer(batch)


@pytest.fixture
def filled(cache_dir, template):
    """``cache_dir`` holding the template's entries (modes and times kept); the expected outputs."""
    shutil.copytree(template[0], cache_dir)
    return template[1]


def entries(cache_dir, kind="networks"):
    return sorted((cache_dir / kind).glob("*.entry")) if (cache_dir / kind).is_dir() else []


def network(weights, **kw):
    return Engine(weights=str(weights), runtime_request="openvino", **kw).network


def no_weights_read(monkeypatch):
    """Any read of the weights file's contents (h5py, the md5) fails the test."""
    import h5py

    from xception_cli.weights import resolve

    def fail(*a, **k):
        pytest.fail("the weights file was read")

    monkeypatch.setattr(h5py, "File", fail)
    monkeypatch.setattr(resolve, "_md5", fail)


def test_second_run_loads_the_cache_without_the_weights_file_and_is_exact(cache_dir, weights_file, batch,
                                                                          monkeypatch):
    from xception_cli.weights import describe, md5sum, weights_source

    plain = network(weights_file, cache=False)
    assert plain.cache is None and not entries(cache_dir)
    uncached = plain.infer(batch)
    first = network(weights_file)
    assert first.cache == "stored" and len(entries(cache_dir)) == 1
    info, md5 = describe(weights_source(str(weights_file))), md5sum(weights_file)
    assert oct((cache_dir / "networks").stat().st_mode & 0o777) == "0o700"
    assert oct(entries(cache_dir)[0].stat().st_mode & 0o777) == "0o600"

    with monkeypatch.context() as m:
        no_weights_read(m)
        usercache._facts.clear()  # what this process remembers: the second run is another process
        second = Engine(weights=str(weights_file), runtime_request="openvino")
        assert second.info == info and md5sum(weights_file) == md5  # from the cache: no h5py, no md5
        assert second.network.cache == "loaded" and not second.network.notes
        assert set(second.network.timings) >= {"cache_read_s", "cache_import_s"}
        cached = second.infer(batch)
    assert np.array_equal(cached, uncached)  # bit-identical
    assert np.array_equal(first.infer(batch), uncached)


def test_a_changed_weights_file_is_never_served_from_the_old_entry(cache_dir, weights_file, tmp_path, batch):
    import h5py

    w = tmp_path / "w.h5"
    shutil.copyfile(weights_file, w)
    old = network(w)
    assert old.cache == "stored"
    before = os.stat(w)
    with h5py.File(w, "r+") as f:  # new values in place: same path, inode and size
        bias = f["predictions"]["predictions"]["bias:0"]
        bias[...] = bias[...] + 3.0 * (np.arange(bias.shape[0]) % 7)
    os.utime(w, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    after = os.stat(w)
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (before.st_size, before.st_ino, before.st_mtime_ns)

    new = network(w)
    assert new.cache == "stored", "the entry of the old contents was served"
    assert not np.array_equal(new.infer(batch), old.infer(batch))
    assert np.array_equal(new.infer(batch), network(w, cache=False).infer(batch))
    assert network(w).cache == "loaded"


def test_a_file_changed_in_place_gets_a_new_fingerprint(tmp_path):
    """Sampled blocks see a change inside them; a change anywhere, even with the mtime put back,
    changes the ctime (which no one can set back)."""
    f = tmp_path / "data.bin"
    f.write_bytes(bytes(1 << 20))
    st = os.stat(f)
    base = usercache.fingerprint(f)
    last = (1 << 20) - usercache.SAMPLE_BYTES
    for offset, sampled in ((0, True), (last * 40 // (usercache.SAMPLES - 1) + 7, True), ((1 << 20) - 1, True),
                            (last * 40 // (usercache.SAMPLES - 1) + usercache.SAMPLE_BYTES + 7, False)):
        for byte in (b"\x01", b"\x00"):  # changed, then put back as it was
            with open(f, "r+b") as fh:
                fh.seek(offset)
                fh.write(byte)
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
            now = usercache.fingerprint(f)
            assert (now["sample"] != base["sample"]) == (sampled and byte == b"\x01")
            assert now != base and now["mtime_ns"] == base["mtime_ns"]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_entry_is_rebuilt_with_one_warning(cache_dir, filled, weights_file, batch, damage):
    (entry,) = entries(cache_dir)
    size = entry.stat().st_size
    if damage == "truncated":
        os.truncate(entry, size // 2)
    else:
        with open(entry, "r+b") as f:  # a few bytes in the middle of the weights
            f.seek(size // 2)
            f.write(b"\xff\x00\xff\x00")
    rebuilt = network(weights_file)
    assert rebuilt.cache == "stored"
    warnings = [n for n in rebuilt.notes if "cache entry" in n]
    assert len(warnings) == 1 and damage in warnings[0] and "rebuilt" in warnings[0]
    assert np.array_equal(rebuilt.infer(batch), filled)
    again = network(weights_file)
    assert again.cache == "loaded" and not again.notes


def test_untrusted_entries_and_folders_are_never_loaded(cache_dir, filled, weights_file):
    (entry,) = entries(cache_dir)
    os.chmod(entry, 0o620)  # group-writable
    n = network(weights_file)
    assert n.cache == "stored" and any("open to group or others" in x for x in n.notes)
    assert oct(entry.stat().st_mode & 0o777) == "0o600"  # replaced by a private one
    assert network(weights_file).cache == "loaded"

    os.chmod(cache_dir, 0o755)  # the folder is not 0700: neither read nor written
    mtime = entry.stat().st_mtime_ns
    n = network(weights_file)
    assert n.cache is None and any("cache folder" in x and "0755" in x for x in n.notes)
    assert entry.stat().st_mtime_ns == mtime
    os.chmod(cache_dir, 0o700)

    if os.geteuid() != 0:
        return  # giving a file away takes root
    os.chown(entry, os.geteuid() + 4321, -1)
    n = network(weights_file)
    assert n.cache == "stored" and any("owned by another user" in x for x in n.notes)


def test_two_processes_filling_at_once_both_succeed(cache_dir, weights_file, tmp_path):
    """Each process waits for the other before writing, so both write the same entry at once."""
    gate = tmp_path / "gate"
    gate.mkdir()
    script = textwrap.dedent(f"""
        import hashlib, os, sys, time
        import numpy as np
        from xception_cli import usercache
        from xception_cli.engine import Engine
        real = usercache.write_entry
        def write_entry(*a, **k):
            open(os.path.join({str(gate)!r}, str(os.getpid())), "w").close()
            deadline = time.time() + 60
            while len(os.listdir({str(gate)!r})) < 2 and time.time() < deadline:
                time.sleep(0.01)
            return real(*a, **k)
        usercache.write_entry = write_entry
        net = Engine(weights={str(weights_file)!r}, runtime_request="openvino").network
        out = net.infer(np.linspace(-1, 1, 299 * 299 * 3, dtype=np.float32).reshape(1, 299, 299, 3))
        print(net.cache, hashlib.sha256(out.tobytes()).hexdigest())
    """)
    env = {**os.environ, usercache.ENV_DIR: str(cache_dir), usercache.ENV_OFF: "0"}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    lines = [out.split() for out, _ in results]
    assert [state for state, _ in lines] == ["stored", "stored"]
    assert lines[0][1] == lines[1][1]
    assert len(entries(cache_dir)) == 1 and not list((cache_dir / "networks").glob(".writing-*"))
    assert network(weights_file).cache == "loaded"


def test_no_cache_writes_nothing_and_v_says_what_the_cache_did(cache_dir, weights_file, samples, monkeypatch):
    from click.testing import CliRunner

    from xception_cli.cli import cli
    from xception_cli.engine import clear_engines

    args = ["predict", str(samples[0]), "-f", "jsonl", "--weights", str(weights_file), "--runtime", "openvino"]
    clear_engines()
    try:
        result = CliRunner().invoke(cli, [*args, "--no-cache"])
        assert result.exit_code == 0, result.output
        assert not cache_dir.exists()
        monkeypatch.setenv(usercache.ENV_OFF, "0")  # what --no-cache set for this process (and its children)
        clear_engines()
        with_cache = CliRunner().invoke(cli, [*args, "-v"])  # the same command without it does write
        assert with_cache.exit_code == 0 and len(entries(cache_dir)) == 1
        assert f"cache: kept {entries(cache_dir)[0]}" in with_cache.stderr
        clear_engines()
        again = CliRunner().invoke(cli, [*args, "-v"])
        assert f"cache: compiled network loaded from {entries(cache_dir)[0]}" in again.stderr
        clear_engines()
        assert "cache:" not in CliRunner().invoke(cli, args).stderr  # loaded again, said with -v only
    finally:
        clear_engines()
    assert [json.loads(x)["predictions"] for x in result.stdout.splitlines()] == \
        [json.loads(x)["predictions"] for x in with_cache.stdout.splitlines()]


def test_the_cache_keeps_to_its_bound_oldest_first(cache_dir, monkeypatch):
    monkeypatch.setenv(usercache.ENV_MAX_MB, "2")
    paths = []
    for i in range(4):
        key = usercache.key_text({"kind": "test", "i": i})
        path = usercache.entry_path("networks", key)
        assert usercache.write_entry(path, key, {}, bytes(900_000))
        os.utime(path, (1000 + i, 1000 + i))  # used in this order
        paths.append(path)
    assert usercache.evict(keep=paths[0]) > 0
    # the least recently used go first until 2 MB hold; the one just written (keep) stays
    assert [p.exists() for p in paths] == [True, False, False, True]
    assert sum(p.stat().st_size for p in paths if p.exists()) <= 2 << 20
