"""Ray itself: joining a cluster or starting a local Ray, sizing the actor pool, and leaving
nothing of a Ray this command started running, or on disk, when it ends."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager

from ..errors import XceptionError, one_line
from .stages import DECODE_CPUS

RAY_HINT = "--ray needs Ray Data: pip install 'xception-cli[ray]'"
LOCAL_ADDRESSES = ("local", "auto")  # Ray finds these itself: no host and port to ask
DEFAULT_PORTS = {"": 6379, "ray": 10001}  # a cluster's GCS port; the Ray Client server's
CONNECT_TIMEOUT_S = 3.0  # how long an address may take to answer at all
_ADDRESS_HINT = "start the cluster, or leave --ray-address/RAY_ADDRESS unset for a local Ray"
# Ray's own wait when something answers that is not (yet) a Ray: one attempt of ~20 s, not twenty
# of ~40 s each. Only set where the user has not; only while ``ray.init`` connects.
RAY_CONNECT_SETTINGS = {"RAY_gcs_server_port_wait_time_s": "1", "RAY_py_gcs_connect_timeout_s": "10"}
# What of this process's environment Ray's workers are handed (as runtime_env env_vars, which
# Ray writes in plain text to its logs and shows on a cluster's dashboard): where S3 is, never
# who we are. A local Ray's workers inherit this process's environment, credentials included;
# a cluster's nodes use their own (instance roles, mounted secrets).
TRAVELLING_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")
# A local Ray of our own keeps its state in a folder of its own (``PrivateRay``): Ray's unix
# sockets live under it, and a socket's path may not pass 107 bytes; Ray adds up to 64
# ("/session_<date>_<time>_<pid>/sockets/plasma_store"), so Ray's folder ("<parent>/xr-XXXXXXXX/ray")
# may take 40.
STATE_PREFIX = "xr-"
MAX_STATE_PATH = 40
LOOPBACK = "127.0.0.1"


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise XceptionError(RAY_HINT) from None
    return ray


def init_ray(address: str | None, quiet: bool = True):
    """Connect to ``address`` (or ``$RAY_ADDRESS``), or start a local Ray; reuse one already up.
    An address where nothing answers is an ``XceptionError`` within seconds, not a wait of minutes."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return sys.modules["ray"]
    # "local": a new Ray of our own. (None would join whatever cluster `ray start` last
    # recorded on this machine, and wait forever if that one is gone.)
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    check_address(address)
    env = settings_for_workers(os.environ)
    own = PrivateRay.start() if address == "local" else None  # a Ray the user named is left as it is
    if quiet:  # Ray's C++ core logs notes at "error" level on the driver's stderr; real errors still raise
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    saved = None
    if quiet:  # the C++ start-up notes go to fd 2 directly; errors still raise in Python
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    try:
        with _bounded_connect(address != "local"):  # Ray's core reads some settings on import
            ray = require_ray()
            private = own.init_arguments(ray) if own else {}
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=not quiet, configure_logging=True,
                         logging_level="ERROR" if quiet else "INFO", runtime_env={"env_vars": env} if env else None,
                         **private)
            finally:
                if own:
                    own.started()
    except ConnectionError as e:  # it answered, but no Ray (or not in time)
        if address == "local":
            raise
        raise XceptionError(f"ray address {address}: no Ray answers there ({one_line(e)}): {_ADDRESS_HINT}") from None
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    return ray


class PrivateRay:
    """What a local Ray this command starts keeps to itself, and gives back when it ends.

    - **State**: a folder made by ``mkdtemp`` (0700) under ``$TMPDIR`` (``/tmp`` where that is
      too long for Ray's socket paths), or under ``$RAY_TMPDIR`` where the user set it; Ray's
      own folder (which Ray makes 0777, as it does ``/tmp/ray``) is ``ray/`` inside it. Removed
      by ``remove()`` (after ``ray.shutdown()`` and the orphans' kill), at exit at the latest;
      kept where ``$RAY_TMPDIR`` was set (to read Ray's logs).
    - **Token**: Ray's token authentication, with a fresh token in ``auth_token`` (0600) in that
      folder (``RAY_AUTH_TOKEN_PATH``); ``~/.ray/auth_token`` is never read or written, and
      ``RAY_AUTH_TOKEN`` is set aside while this Ray runs.
    - **Loopback**: the node's address is 127.0.0.1, and Ray's servers (GCS, raylet, object
      manager, workers, agents) listen there: Ray binds loopback when the node's address is
      127.0.0.1, once it is kept from replacing that address by the machine's own
      (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``).
    - **Nothing sent**: usage stats off (``RAY_USAGE_STATS_ENABLED=0``), and no API server
      ("dashboard") process: without the dashboard it runs only Ray's usage-stats module, which
      asks the cloud metadata addresses (169.254.169.254, metadata.google.internal) which cloud
      this is on every start, with no setting to stop it.

    The settings are in this process's environment (Ray's processes inherit them) while this Ray
    runs, and put back as they were by ``remove()``.
    """

    current: PrivateRay | None = None
    SETTINGS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
                "RAY_USAGE_STATS_ENABLED")

    def __init__(self, folder: str, keep: bool):
        self.folder, self.keep = folder, keep
        self.temp_dir = os.path.join(folder, "ray")
        self.saved = {k: os.environ.get(k) for k in self.SETTINGS}
        self.applied: dict = {}  # what start() set: put back only where nobody changed it since
        self._undo: list = []

    @classmethod
    def start(cls) -> PrivateRay:
        if cls.current is not None:  # a Ray of ours that ended without remove(): its folder goes first
            cls.current.remove()
        longest = MAX_STATE_PATH - len(f"/{STATE_PREFIX}XXXXXXXX/ray")  # for the folder it is made in
        chosen = os.environ.get("RAY_TMPDIR")
        if chosen:
            chosen = os.path.abspath(chosen)
            if len(chosen) > longest:
                raise XceptionError(f"RAY_TMPDIR {chosen}: too long for Ray's socket paths (at most {longest} "
                                    "characters), or leave it unset")
        parent = chosen or tempfile.gettempdir()
        if len(parent) > longest and os.path.isdir("/tmp"):
            parent = "/tmp"
        folder = tempfile.mkdtemp(prefix=STATE_PREFIX, dir=parent)  # 0700, a new name: nobody else's
        own = cls(folder, keep=bool(chosen))
        cls.current = own
        atexit.register(own.remove)
        token = os.path.join(folder, "auth_token")
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w") as f:
            import secrets

            f.write(secrets.token_hex(32))  # 256 bits, as Ray's own tokens
        os.environ.pop("RAY_AUTH_TOKEN", None)  # it would come before the file
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=token, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                          RAY_USAGE_STATS_ENABLED="0")
        own.applied = {k: os.environ.get(k) for k in cls.SETTINGS}
        return own

    def init_arguments(self, ray) -> dict:
        """``ray.init`` arguments for this Ray, with Ray's internals set for its start (undone by
        ``started``): Ray, once imported, has read its settings from the environment."""
        try:
            from ray._private import ray_constants
            from ray._private.node import Node
            from ray._raylet import AuthenticationTokenLoader, Config
        except ImportError:  # another Ray than the one this was written for: the settings alone
            return {"_temp_dir": self.temp_dir, "_node_ip_address": LOOPBACK}
        Config.initialize("")  # the token mode, as Ray itself refreshes it
        AuthenticationTokenLoader.instance().reset_cache()  # never a token read before
        self._set(ray_constants, "ENABLE_RAY_CLUSTER", False)
        self._set(Node, "start_api_server", _no_api_server)
        return {"_temp_dir": self.temp_dir, "_node_ip_address": LOOPBACK}

    def _set(self, owner, name: str, value) -> None:
        if hasattr(owner, name):
            self._undo.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)

    def started(self) -> None:
        """Ray's internals as they were (``init_arguments``)."""
        while self._undo:
            owner, name, value = self._undo.pop()
            setattr(owner, name, value)

    def remove(self) -> None:
        """The folder removed (unless kept), and the settings put back; once."""
        if PrivateRay.current is self:
            PrivateRay.current = None
        for k, v in self.saved.items():
            if os.environ.get(k) != self.applied.get(k):
                continue  # set by someone else since: theirs
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.saved = {}
        loader = getattr(sys.modules.get("ray._raylet"), "AuthenticationTokenLoader", None)
        if loader is not None:
            loader.instance().reset_cache()  # our token goes with its file
        if self.keep:
            return
        for _ in range(5):  # a Ray process still ending may write one more line
            shutil.rmtree(self.folder, ignore_errors=True)
            if not os.path.lexists(self.folder):
                return
            time.sleep(0.2)


def _no_api_server(node, *, include_dashboard=None, raise_on_failure=False) -> None:
    """``Node.start_api_server`` for a Ray of ours: none (what Ray records without a dashboard)."""
    node._webui_url = ""


def remove_private_ray() -> None:
    """The state of a Ray this process started (``PrivateRay``) removed; call it once Ray's
    processes are gone."""
    if PrivateRay.current is not None:
        PrivateRay.current.remove()


def settings_for_workers(environ) -> dict[str, str]:
    """The part of ``environ`` handed to Ray's workers: the S3 endpoint and region
    (``TRAVELLING_SETTINGS``), never a credential."""
    return {k: environ[k] for k in TRAVELLING_SETTINGS if environ.get(k)}


def address_endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` that must answer for a Ray ``address`` (``host:port`` or
    ``ray://host:port``); ``None`` for ``local``/``auto`` and schemes Ray resolves otherwise."""
    if address in LOCAL_ADDRESSES:
        return None
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    if scheme not in DEFAULT_PORTS:
        return None
    rest = rest.split("/", 1)[0]
    host, colon, port = rest.rpartition(":")
    if not colon or host.count(":") and not host.endswith("]"):  # no port (an IPv6 host needs [ ])
        host, port = rest, str(DEFAULT_PORTS[scheme])
    host = host.strip("[]")
    return (host, int(port)) if host and port.isdigit() else None


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """``XceptionError`` at once when nothing answers at a Ray address (Ray itself would wait
    minutes, and Ctrl-C would take long to end it)."""
    import socket

    endpoint = address_endpoint(address)
    if endpoint is None:
        return
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            return
    except socket.gaierror:
        why = "no such host"
    except ConnectionRefusedError:
        why = "connection refused"
    except TimeoutError:
        why = f"no answer within {timeout_s:g} s"
    except OSError as e:
        why = (e.strerror or one_line(e)).lower()
    raise XceptionError(f"ray address {address}: nothing answers there ({why}): {_ADDRESS_HINT}")


@contextmanager
def _bounded_connect(connecting: bool):
    """``RAY_CONNECT_SETTINGS`` in the environment while Ray connects (not where the user set them)."""
    added = [k for k in RAY_CONNECT_SETTINGS if connecting and k not in os.environ]
    os.environ.update({k: RAY_CONNECT_SETTINGS[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


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
