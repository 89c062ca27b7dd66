"""S3 secrets never leave the process that was given them: Ray's workers are handed the endpoint
and region only (Ray writes what it is handed to its logs and shows it on a cluster's dashboard)."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from xception_cli.scale.cluster import settings_for_workers

SECRET = "sentinel-secret-5d1f0b9c"
TOKEN = "sentinel-token-a83e27c4"


def test_only_endpoint_and_region_travel():
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN,
           "AWS_PROFILE": "me", "AWS_SHARED_CREDENTIALS_FILE": "/home/me/.aws/credentials",
           "AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ENDPOINT_URL_S3": "http://s3.minio:9000",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-2", "HOME": "/home/me"}
    assert settings_for_workers(env) == {
        "AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ENDPOINT_URL_S3": "http://s3.minio:9000",
        "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-2"}
    assert settings_for_workers({"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": ""}) == {}


@pytest.fixture
def ray_temp():
    """A folder of its own for Ray's session files: short, as Ray's socket paths must be (107
    bytes), which pytest's tmp_path is not."""
    with tempfile.TemporaryDirectory(prefix="xr-", dir="/tmp" if os.path.isdir("/tmp") else None) as d:
        yield Path(d)


def test_a_run_on_ray_writes_no_secret_into_rays_files(ray_temp, tmp_path, samples, weights_file):
    pytest.importorskip("ray")
    temp = ray_temp
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN,
               AWS_DEFAULT_REGION="eu-west-1", RAY_TMPDIR=str(temp))
    out = tmp_path / "labels.jsonl"
    r = subprocess.run([sys.executable, "-m", "xception_cli", "predict", str(samples[0]), "--ray", "-o", str(out),
                        "--weights", str(weights_file)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 1
    files = [p for p in temp.rglob("*") if p.is_file()]
    assert any(p.name.startswith("runtime_env_agent") for p in files)  # Ray's session was kept here
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes() or TOKEN.encode() in p.read_bytes()]
    assert leaked == []
