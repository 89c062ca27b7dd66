"""A local Ray started by `--ray` keeps to itself (issue 18: item 7, and Ray's part of item 11).

Its state is in a private folder (0700) that is gone when the command ends (also after Ctrl-C),
never in the shared /tmp/ray; its token is its own (nothing written to ~/.ray); its servers listen
on the loopback interface only; and it asks no cloud metadata address which cloud this is.
Watched from outside, as a user would: the command in a subprocess with TMPDIR and HOME of the
test's own, its process tree's listening sockets read from /proc, and every name looked up and
every address connected to by any Python process of the run (a sitecustomize) written to a log.
"""

import ipaddress
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

if not sys.platform.startswith("linux"):
    pytest.skip("reads /proc", allow_module_level=True)

WATCH = '''
import os, socket

def _note(what):
    with open(os.environ["XT_NET_LOG"], "a") as f:
        f.write(f"{os.getpid()} {what}\\n")

_getaddrinfo, _connect, _connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex

def getaddrinfo(host, *args, **kwargs):
    _note(f"resolve {host}")
    return _getaddrinfo(host, *args, **kwargs)

def connect(self, address):
    _note(f"connect {address!r}")
    return _connect(self, address)

def connect_ex(self, address):
    _note(f"connect {address!r}")
    return _connect_ex(self, address)

socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = getaddrinfo, connect, connect_ex
'''
METADATA = ("169.254.169.254", "metadata.google.internal")


@pytest.fixture
def world(tmp_path, samples):
    """TMPDIR (short, as Ray's socket paths must be) and HOME of the test's own, a few photos,
    and the network log."""
    tmpdir = Path(tempfile.mkdtemp(prefix="xt-", dir="/tmp" if os.path.isdir("/tmp") else None))
    home = tmp_path / "home"
    home.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WATCH)
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in samples:
        shutil.copy(p, photos / p.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(TMPDIR=str(tmpdir), HOME=str(home), XT_NET_LOG=str(tmp_path / "net.log"),
               PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    yield {"tmpdir": tmpdir, "home": home, "photos": photos, "env": env, "log": tmp_path / "net.log"}
    shutil.rmtree(tmpdir, ignore_errors=True)


def start(world, weights_file, out, **kwargs):
    args = [sys.executable, "-m", "xception_cli", "predict", str(world["photos"]), "--ray", "-b", "1", "-o", str(out),
            "--weights", str(weights_file)]
    return subprocess.Popen(args, env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def process_tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word in host order
    return ipaddress.ip_address(raw)


def listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of each TCP socket in LISTEN state that one of ``pids`` holds."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address, port = fields[1].split(":")
                found.add((str(_address(address)), int(port, 16)))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def watch(proc, world, until=None, deadline_s=300):
    """Poll while the command runs: the listening sockets of its processes and the modes of what
    appears in TMPDIR. ``until(seen)`` true ends the watch early (the command still running)."""
    seen = {"listening": set(), "modes": {}}
    end = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < end:
        seen["listening"] |= listening(process_tree(proc.pid))
        for p in world["tmpdir"].iterdir():
            try:
                seen["modes"].setdefault(p.name, set()).add(stat.S_IMODE(p.lstat().st_mode))
            except OSError:
                pass
        if until and until(seen):
            return seen
        time.sleep(0.2)
    return seen


def running(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie its new parent has yet to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def shared_sessions(pid: int) -> list[str]:
    """Ray session folders of the command's Ray in the shared /tmp/ray (named after the driver's pid)."""
    try:
        return [n for n in os.listdir("/tmp/ray") if n.startswith("session_") and n.endswith(f"_{pid}")]
    except OSError:
        return []


def world_readable_under(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.lstat().st_mode & stat.S_IROTH and not p.is_symlink()]


def test_a_local_ray_keeps_to_itself_and_leaves_nothing(world, weights_file, tmp_path):
    out = tmp_path / "labels.jsonl"
    proc = start(world, weights_file, out)
    seen = watch(proc, world)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert len(out.read_text().splitlines()) == 4
    # During the run: Ray's state in one folder of its own, 0700; its servers on loopback only.
    assert len(seen["modes"]) == 1, seen["modes"]
    assert list(seen["modes"].values()) == [{0o700}], seen["modes"]
    assert len(seen["listening"]) >= 3, seen  # GCS, raylet, workers: they were seen
    assert [a for a in seen["listening"] if not is_loopback(a[0])] == []
    # After it: nothing of Ray left, in TMPDIR, in the shared /tmp/ray or in ~/.ray.
    assert list(world["tmpdir"].iterdir()) == []
    assert shared_sessions(proc.pid) == []
    ray_home = world["home"] / ".ray"
    assert not (ray_home / "auth_token").exists()
    assert not ray_home.exists() or world_readable_under(ray_home) == []
    # Nobody asked which cloud this is.
    log = world["log"].read_text() if world["log"].exists() else ""
    assert [line for line in log.splitlines() if any(m in line for m in METADATA)] == []


def test_ctrl_c_leaves_no_state_behind(world, weights_file, tmp_path):
    """A Ctrl-C from the terminal (SIGINT to the whole process group) once Ray is up and working."""
    proc = start(world, weights_file, tmp_path / "labels.jsonl", start_new_session=True)
    seen = watch(proc, world, until=lambda seen: len(seen["listening"]) >= 3)
    assert proc.poll() is None, proc.communicate()[1]
    tree = process_tree(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 130
    assert seen["modes"] and all(modes == {0o700} for modes in seen["modes"].values()), seen["modes"]
    assert list(world["tmpdir"].iterdir()) == []
    assert shared_sessions(proc.pid) == []
    assert [pid for pid in tree - {proc.pid} if running(pid)] == []  # nothing of Ray runs on


def test_the_private_folder_and_settings_come_and_go(monkeypatch, tmp_path):
    """``PrivateRay`` on its own (no Ray started): the folder, the token, the settings, and all
    of it put back as it was, the user's own token included."""
    from xception_cli.scale.cluster import PrivateRay, remove_private_ray

    short = Path(tempfile.mkdtemp(prefix="xt-", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        monkeypatch.setenv("TMPDIR", str(short))
        monkeypatch.setattr(tempfile, "tempdir", None)
        monkeypatch.setenv("RAY_AUTH_TOKEN", "users-own")
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
        monkeypatch.delenv("RAY_TMPDIR", raising=False)
        own = PrivateRay.start()
        folder = Path(own.folder)
        assert folder.parent == short and stat.S_IMODE(folder.stat().st_mode) == 0o700
        token = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
        assert token.parent == folder and stat.S_IMODE(token.stat().st_mode) == 0o600
        assert len(token.read_text()) == 64
        assert os.environ["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" not in os.environ
        assert len(own.temp_dir) <= 40  # room for Ray's socket paths under it
        remove_private_ray()
        assert not folder.exists()
        assert os.environ["RAY_AUTH_TOKEN"] == "users-own"
        assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_a_long_tmpdir_falls_back_to_tmp_and_ray_tmpdir_is_kept(monkeypatch, tmp_path):
    from xception_cli.errors import XceptionError
    from xception_cli.scale.cluster import PrivateRay

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # pytest's: too long for Ray's sockets
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    own = PrivateRay.start()
    try:
        assert Path(own.folder).parent == Path("/tmp")
    finally:
        own.remove()
    assert not Path(own.folder).exists()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(XceptionError, match="RAY_TMPDIR .*too long"):
        PrivateRay.start()
    short = Path(tempfile.mkdtemp(prefix="xt-", dir="/tmp"))
    try:
        monkeypatch.setenv("RAY_TMPDIR", str(short))
        own = PrivateRay.start()
        own.remove()
        assert Path(own.folder).parent == short and Path(own.folder).is_dir()  # kept, for Ray's logs: 0700
        assert stat.S_IMODE(Path(own.folder).stat().st_mode) == 0o700
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_a_users_ray_is_left_as_it_is(monkeypatch):
    """An address given: no private folder, no settings changed (the user's Ray, the user's token)."""
    from xception_cli.errors import XceptionError
    from xception_cli.scale import cluster

    monkeypatch.setenv("RAY_AUTH_TOKEN", "users-own")
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()
    before, current = dict(os.environ), cluster.PrivateRay.current
    with pytest.raises(XceptionError, match="nothing answers"):
        cluster.init_ray(address)
    assert cluster.PrivateRay.current is current
    assert dict(os.environ) == before
