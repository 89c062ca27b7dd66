"""Where `--ray` runs: a local Ray of its own without an address; an address where nothing answers
is a one-line error within seconds (Ray itself would wait for minutes)."""

import os
import socket
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")

HINT = "start the cluster, or leave --ray-address/RAY_ADDRESS unset for a local Ray"


@pytest.fixture
def dead_address():
    """A port of this machine where every connection is refused (bound, never listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("how", ["RAY_ADDRESS", "--ray-address", "ray://"])
def test_an_address_where_nothing_answers_fails_at_once(how, dead_address, samples, tmp_path):
    address = f"ray://{dead_address}" if how == "ray://" else dead_address
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    args = [sys.executable, "-m", "xception_cli", "predict", str(samples[0]), "--ray", "-o", str(tmp_path / "r.jsonl")]
    if how == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = address
    else:
        args += ["--ray-address", address]
    started = time.monotonic()
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"Error: ray address {address}: nothing answers there (connection refused): {HINT}"]
    assert elapsed < 10
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("address, endpoint", [
    ("local", None), ("auto", None),
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("head", ("head", 6379)),
    ("ray://head:10002", ("head", 10002)), ("ray://head", ("head", 10001)),
    ("[::1]:6380", ("::1", 6380)), ("ray://[::1]", ("::1", 10001)),
])
def test_the_endpoint_checked_for_an_address(address, endpoint):
    from xception_cli.scale.cluster import address_endpoint

    assert address_endpoint(address) == endpoint


def test_without_an_address_ray_starts_its_own_and_joining_waits_briefly(monkeypatch):
    from xception_cli.scale import init_ray

    wait = "RAY_gcs_server_port_wait_time_s"
    seen = {}
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(wait, raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw, wait=os.environ.get(wait)))
    init_ray(None)
    assert seen["address"] == "local"  # None would join any cluster `ray start` left recorded here
    assert seen["wait"] is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        address = f"ray://127.0.0.1:{s.getsockname()[1]}"
        init_ray(address)
    assert seen["address"] == address
    assert seen["wait"] == "1"  # Ray's own connect wait is bounded while it joins ...
    assert wait not in os.environ  # ... and the setting is gone after
