"""`predict --ray` on a two-node Ray cluster faked on this machine: actors on both nodes."""

import json
import shutil

import pytest
from click.testing import CliRunner

from xception_cli.cli import cli

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


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
