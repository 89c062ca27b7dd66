"""Ray itself: joining a cluster or starting a local Ray, sizing the actor pool, and leaving
nothing of a Ray this command started running when it ends."""

from __future__ import annotations

import os
import time

from ..errors import OutputError, XceptionError
from .stages import DECODE_CPUS

RAY_HINT = "--ray needs Ray Data: pip install 'xception-cli[ray]'"


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise XceptionError(RAY_HINT) from None
    return ray


def init_ray(address: str | None, quiet: bool = True):
    """Connect to ``address`` (or ``$RAY_ADDRESS``), or start a local Ray; reuse one already up."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    if quiet:  # Ray's C++ core logs notes at "error" level on the driver's stderr; real errors still raise
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    import sys

    saved = None
    if quiet:  # the C++ start-up notes go to fd 2 directly; errors still raise in Python
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    try:
        # "local": a new Ray of our own. (None would join whatever cluster `ray start` last
        # recorded on this machine, and wait forever if that one is gone.)
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 log_to_driver=not quiet, configure_logging=True, logging_level="ERROR",
                 runtime_env={"env_vars": env} if env else None)
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    return ray


def plan_actors(ray, requested: int | None) -> tuple[int, float]:
    """``(actors, CPUs per actor)``: one actor per node by default; each node keeps half a CPU for
    the decoding tasks (an actor pool that took every CPU would leave them none, and wait forever)."""
    sizes = sorted((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), reverse=True)
    sizes = [s for s in sizes if s > DECODE_CPUS] or [float(os.cpu_count() or 1)]
    actors = requested or len(sizes)
    # Spread the actors over the nodes; the busiest node decides each actor's share.
    per_node = [actors // len(sizes) + (i < actors % len(sizes)) for i in range(len(sizes))]
    shares = [(cpus - DECODE_CPUS) / n for cpus, n in zip(sizes, per_node) if n]
    per_actor = min(shares)
    if per_actor < 0.25:
        raise XceptionError(f"--actors {actors}: the cluster's {sum(sizes):g} CPUs on {len(sizes)} node(s) leave too "
                            "little for each actor and the decoding tasks")
    return actors, round(per_actor, 2)


def adopt_orphans() -> None:
    """Linux: become the "subreaper" of this process's descendants. A Ctrl-C from a terminal
    reaches Ray's processes too; Ray's agents outlive its raylet and would be re-parented to init
    and run on; re-parented to us instead, they are found and stopped when the command ends."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def ray_children() -> list[int]:
    """This process's children that belong to Ray (its own, or adopted), from /proc."""
    me = str(os.getpid())
    found = []
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z" and b"ray" in cmd:
            found.append(int(pid))
    return found


def kill_adopted_ray_processes(wait_s: float = 3.0) -> None:
    """Stop whatever of Ray is still a child of ours after ``ray.shutdown()``: nothing after a
    normal run; after a Ctrl-C during Ray's start-up, its agents as they are orphaned."""
    import signal

    deadline = time.monotonic() + wait_s
    while True:
        left = ray_children()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def check_writable_folder(folder: str) -> None:
    """Shards can be written into ``folder`` (made if missing): found out before any work."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".xception-probe-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{folder}: cannot write shards there ({e.strerror})") from None


def shutdown_quietly(ray) -> None:
    import signal

    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        ray.shutdown()
        return
    try:
        ray.shutdown()
    finally:
        signal.signal(signal.SIGINT, old)
