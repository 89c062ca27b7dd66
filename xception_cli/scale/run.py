"""The predict (and embed) job on Ray Data: the driver that lists the inputs, starts or joins
Ray, runs the stages and writes the records as ``predict`` does."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from ..errors import OutputError
from .cluster import (
    adopt_orphans,
    check_writable_folder,
    init_ray,
    kill_adopted_ray_processes,
    plan_actors,
    shutdown_quietly,
)
from .shards import SHARD_FORMATS, ShardFolderWriter, is_shard_target, record_key, recorded_in_shards
from .stages import build_dataset, record_from_json
from .uris import is_uri, list_uri


@dataclass
class RayStats:
    done: int = 0
    failed: int = 0
    nodes: set = field(default_factory=set)
    actors: int = 0


def run_ray_job(job, address: str | None, actors: int | None) -> int:
    """``jobs.PredictJob`` on Ray Data: the same inputs, records, output rules and exit codes."""
    from ..discovery import discover
    from ..output import display_path

    o, ui = job.o, job.ui
    local = [x for x in o.inputs if not is_uri(x)]
    uris = [x for x in o.inputs if is_uri(x)]
    found = discover(local) if local else None
    names: list[str] = list(found.ordered) if found else []
    missing = set(found.missing) if found else set()
    for raw, why in (found.problems if found else []):
        ui.warn(f"{display_path(raw)[0]}: {why}")
    if is_shard_target(o.output):  # checked before Ray starts: a mistake costs nothing
        usable = [f for f in SHARD_FORMATS if f in o.head.formats or f == "parquet"]
        if o.fmt not in usable:
            raise OutputError(f"{o.output}: shards are written as {' or '.join(usable)}, not {o.fmt}")
        if "://" not in o.output:
            check_writable_folder(o.output)
    was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    own = not was_up and not (address or os.environ.get("RAY_ADDRESS"))
    if own:
        adopt_orphans()
    try:
        ray = init_ray(address)
        return _run_on_ray(job, ray, names, missing, uris, actors)
    finally:
        # A Ray this command started (even half-way, when Ctrl-C came during start-up) is stopped
        # now, so nothing is left running and Ctrl-C can't hit Ray's atexit hook.
        if not was_up and "ray" in sys.modules:
            shutdown_quietly(sys.modules["ray"])
        if own:
            kill_adopted_ray_processes()


def _run_on_ray(job, ray, names, missing, uris, actors) -> int:
    from ..jobs import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, NoInputs
    from ..output import display_path, path_key

    o, ui = job.o, job.ui
    for uri in uris:
        listed = list_uri(uri)
        if not listed:
            ui.warn(f"{uri}: no images found")
        names += listed
    if not [n for n in names if n not in missing]:
        raise NoInputs("no images found: " + "; ".join(o.inputs))

    shards = is_shard_target(o.output)
    out = None
    if shards:
        done = recorded_in_shards(o.output, o.head.key, warn=ui.warn)
        keep = [n for n in names if record_key(n) not in done]
        if len(keep) != len(names):
            ui.info(f"{len(names) - len(keep)} already recorded in {o.output}, {len(keep)} to go")
        names = keep
    else:
        out = job._open_output([n for n in names if n not in missing and not is_uri(n)])
        if out is not None and o.resume:
            before = len(names)
            names = [n for n in names if (n if is_uri(n) else path_key(n)) not in out.done]
            ui.info(f"resume: {before - len(names)} already {o.head.done} in {o.output}, {len(names)} to go")
    if not names:
        if out is not None:
            out.close()
        return EXIT_OK

    n_actors, per_actor = plan_actors(ray, actors)
    stats = RayStats(actors=n_actors)
    started = time.perf_counter()
    ds = build_dataset(names, missing, o, n_actors, per_actor, progress=getattr(ui, "show_progress", False))
    interrupted = False
    try:
        if shards:  # shard files, written as the results stream back: Ctrl-C keeps what is done
            writer = ShardFolderWriter(o.output, o.fmt, o.head.key, options=job._embed_options())
        else:
            writer = job._writer(out)
        try:
            for batch in ds.iter_batches(batch_size=o.batch_size, batch_format="numpy"):
                records = [record_from_json(t) for t in batch["record"]]
                for r in records:
                    if r.error is not None:
                        ui.warn(f"{display_path(r.path)[0]}: {r.error}")
                        stats.failed += 1
                    else:
                        stats.done += 1
                stats.nodes.update(batch["node"].tolist())
                writer.write(records)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            writer.close()
            if out is not None:
                out.close()
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.perf_counter() - started
    total = time.perf_counter() - job.started
    rate = stats.done / elapsed if elapsed else 0.0
    ui.info(f"{'interrupted: ' if interrupted else ''}{o.head.done} {stats.done}, failed {stats.failed} in "
            f"{total:.1f} s on Ray ({stats.actors} actor(s) on {len(stats.nodes) or 1} node(s); "
            f"{elapsed:.1f} s {o.head.doing} at {rate:.1f} images/s)")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if stats.failed else EXIT_OK
