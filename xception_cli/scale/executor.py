"""``RayExecutor``: the job's records from Ray Data (the other executor is ``jobs.LocalExecutor``).

It joins the address given (or ``$RAY_ADDRESS``) or starts a local Ray of its own, plans the
actors, runs the stages (``stages.build_dataset``) and yields each batch's records in input order;
``close()`` stops a Ray it started (even half-way, when Ctrl-C came during start-up), so nothing
is left running, then removes that Ray's private state folder (``cluster.PrivateRay``).
Everything else — inputs, output, resume, counting, writing — is the job's.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from ..errors import ImageError
from .cluster import (
    adopt_orphans,
    init_ray,
    kill_adopted_ray_processes,
    plan_actors,
    remove_private_ray,
    shutdown_quietly,
)
from .stages import build_dataset, record_from_json


class RayExecutor:
    def __init__(self, options, ui):
        self.o, self.ui = options, ui
        self.ds = None
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
        ray = init_ray(o.ray_address)
        self.actors, per_actor = plan_actors(ray, o.actors)
        names = [name for name, _ in items]
        missing = {name for name, src in items if isinstance(src, ImageError)}
        resolved = replace(o, resize=weights_resize(o.weights, o.resize))  # the actors need no weights file to decide
        self.ds = build_dataset(names, missing, resolved, self.actors, per_actor,
                                progress=getattr(self.ui, "show_progress", False))

    def batches(self):
        for batch in self.ds.iter_batches(batch_size=self.o.batch_size, batch_format="numpy"):
            self.nodes.update(batch["node"].tolist())
            yield [record_from_json(t) for t in batch["record"]]

    def close(self) -> None:
        if not self._was_up and "ray" in sys.modules:
            shutdown_quietly(sys.modules["ray"])
        if self._own:
            try:
                kill_adopted_ray_processes()
            finally:
                remove_private_ray()  # once nothing of Ray is left to write there
