"""`predict --ray` on a two-node Ray cluster faked on this machine: actors on both nodes.

The cluster keeps to itself as the command's own Ray does: its state in a private folder (0700),
removed afterwards, never the shared /tmp/ray; its servers on the loopback interface only; no
usage statistics.
"""

import json
import os
import shutil
import stat
import tempfile

import pytest
from click.testing import CliRunner

from xception_cli.cli import cli

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_nodes():
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    folder = tempfile.mkdtemp(prefix="xc-", dir="/tmp")  # short: Ray's socket paths are limited
    loopback = {"node_ip_address": "127.0.0.1", "temp_dir": os.path.join(folder, "ray")}
    with pytest.MonkeyPatch.context() as mp:
        # RAY_TMPDIR: where Ray writes what is not a node's (the current cluster's address); Ray
        # keeps a node's address 127.0.0.1 only with its "cluster" mode off (as on macOS).
        mp.setenv("RAY_TMPDIR", folder)
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False, **loopback})
        cluster.add_node(num_cpus=2, **loopback)
        cluster.wait_for_nodes()
        cluster.private_folder = folder
        yield cluster
        ray.shutdown()
        cluster.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


def test_the_cluster_keeps_to_itself(two_nodes):
    from test_ray_private import is_loopback, listening, process_tree

    assert stat.S_IMODE(os.stat(two_nodes.private_folder).st_mode) == 0o700
    assert two_nodes.address.startswith("127.0.0.1:")
    sockets = listening(process_tree(os.getpid()))
    assert sockets, "no Ray server found listening"
    assert all(is_loopback(address) for address, _ in sockets), sorted(sockets)
    for node in (two_nodes.head_node, *two_nodes.worker_nodes):
        assert node.get_session_dir_path().startswith(two_nodes.private_folder + os.sep)


def test_actors_run_on_both_nodes(two_nodes, samples, weights_file, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        for p in samples:
            shutil.copy(p, d / f"{i}-{p.name}")
    r = CliRunner().invoke(cli, ["predict", str(d), "--ray", "--ray-address", two_nodes.address, "--actors", "2",
                                 "-b", "2", "-f", "jsonl", "--weights", str(weights_file)])
    assert r.exit_code == 0, r.output
    assert "on Ray (2 actor(s) on 2 node(s)" in r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["path"] for x in got] == sorted(str(p) for p in d.iterdir())  # input order kept
