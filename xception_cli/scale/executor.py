"""``RayExecutor``: the job's records from Ray Data (the other executor is ``jobs.LocalExecutor``).

It joins the address given (or ``$RAY_ADDRESS``) or starts a local Ray of its own, plans the
actors, runs the stages (``stages.build_dataset``) and yields each batch's records in input order;
``close()`` stops a Ray it started (even half-way, when Ctrl-C came during start-up), so nothing
is left running, then removes that Ray's private state folder (``cluster.PrivateRay``).
Everything else — inputs, output, resume, counting, writing, the progress bar — is the job's.

Ray's own logs stay off the terminal unless ``logs.verbose()`` (``-v``): its start-up lines, its
workers' output and Ray Data's notes go to Ray's log files only (in a local Ray's private
folder, removed at the end; ``$RAY_TMPDIR`` keeps it), and ``-v`` says where they are.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace

from ..errors import ImageError, XceptionError
from ..logs import verbose
from .cluster import (
    adopt_orphans,
    init_ray,
    kill_adopted_ray_processes,
    plan_actors,
    remove_private_ray,
    shutdown_quietly,
)
from .stages import build_dataset, record_from_json

RAY_LOGGERS = ("ray", "ray.data")  # Ray Data's logger does not propagate to Ray's


class RayExecutor:
    slow_start = True  # Ray takes seconds to start: the job shows its progress bar from the beginning

    def __init__(self, options, ui):
        self.o, self.ui = options, ui
        self.ds = None
        self._hidden: list[tuple[logging.Logger, logging.Handler]] = []
        self._printer = None  # (ray's worker module, its print_to_stdstream) while replaced
        self.actors = 0
        self.nodes: set = set()
        self._was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        self._own = False

    @property
    def where(self) -> str:
        return f"on Ray ({self.actors} actor(s) on {len(self.nodes) or 1} node(s))"

    def load(self, items) -> None:
        from ..weights import weights_resize

        o = self.o
        self._own = not self._was_up and not (o.ray_address or os.environ.get("RAY_ADDRESS"))
        if self._own:
            adopt_orphans()
        loud = verbose()
        ray = init_ray(o.ray_address, quiet=not loud)
        if loud:
            self._name_logs()
        else:
            self._hide_ray_logs()
        self.actors, per_actor = plan_actors(ray, o.actors)
        names = [name for name, _ in items]
        missing = {name for name, src in items if isinstance(src, ImageError)}
        resolved = replace(o, resize=weights_resize(o.weights, o.resize))  # the actors need no weights file to decide
        # Ray's own bars never: the job's bar counts the records as they come
        self.ds = build_dataset(names, missing, resolved, self.actors, per_actor, progress=False)

    def _hide_ray_logs(self) -> None:
        """Ray's loggers without their terminal handlers (their files keep everything), and the
        errors Ray's driver prints of its own (an actor's traceback, on *stdout*, among the
        results) not printed: the error itself comes back as an exception, one line on stderr.
        Put back by ``close``."""
        for name in RAY_LOGGERS:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                    logger.removeHandler(handler)
                    self._hidden.append((logger, handler))
        worker = sys.modules.get("ray._private.worker")
        if worker is not None and hasattr(worker, "print_to_stdstream"):  # what listen_error_messages calls
            self._printer = (worker, worker.print_to_stdstream)
            worker.print_to_stdstream = _not_printed

    def _name_logs(self) -> None:
        try:
            from ray._private.worker import _global_node

            folder = os.path.join(_global_node.get_session_dir_path(), "logs")
        except Exception:  # noqa: BLE001 - another Ray, or a client connection: nothing to name
            return
        kept = "" if not self._own or os.environ.get("RAY_TMPDIR") else " (removed at the end; RAY_TMPDIR keeps them)"
        self.ui.info(f"Ray's logs: {folder}{kept}")

    def batches(self):
        try:
            for batch in self.ds.iter_batches(batch_size=self.o.batch_size, batch_format="numpy"):
                self.nodes.update(batch["node"].tolist())
                yield [record_from_json(t) for t in batch["record"]]
        except Exception as e:  # an actor that could not start, a task that broke: what broke, in one line
            why = remote_error(e)
            if why is None:
                raise
            raise XceptionError(f"on Ray: {why}" + ("" if verbose() else " (-v shows Ray's logs)")) from e

    def close(self) -> None:
        try:
            if not self._was_up and "ray" in sys.modules:
                shutdown_quietly(sys.modules["ray"])
            if self._own:
                try:
                    kill_adopted_ray_processes()
                finally:
                    remove_private_ray()  # once nothing of Ray is left to write there
        finally:
            while self._hidden:  # Ray's loggers as they were, once it has said its last
                logger, handler = self._hidden.pop()
                logger.addHandler(handler)
            if self._printer is not None:
                worker, printer = self._printer
                worker.print_to_stdstream, self._printer = printer, None


def remote_error(e: BaseException) -> str | None:
    """The last line of the remote traceback Ray's error carries (``RuntimeError: boom``), or
    ``None`` when there is none (Ray's own message is then all there is)."""
    import re

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = getattr(e, "error_msg", None) or (str(e) if type(e).__module__.startswith("ray") else "")
        lines = [line.strip() for line in str(text).splitlines() if line.strip()]
        if lines and re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:", lines[-1]) and len(lines) > 1:
            return lines[-1]
        e = e.__cause__ or e.__context__
    return None


def _not_printed(data, ignore_prefix: bool = False) -> None:
    """``ray._private.worker.print_to_stdstream`` while Ray's logs are kept off the terminal."""
