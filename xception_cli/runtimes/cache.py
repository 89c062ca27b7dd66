"""Compiled networks kept in the user's cache (``usercache``, folder ``networks/``).

Reading 88 MB of weights, building the graph and compiling it take about 0.3 s on every run,
for a network that is the same every time. The first run for a configuration keeps the compiled
network (OpenVINO's ``export_model`` blob, which imports in about half the time that reading the
serialized IR and compiling it again takes); later runs import it and never open the weights file.

The key (``network_key``) holds everything the compiled network depends on: the weights file's
``usercache.fingerprint`` (an IR's .xml and .bin; ``--weights none``: the seeded random weights of
this package version), the runtime and its exact version, the device, this CPU's model and
feature flags and the cores it may use, the precision, threads and performance hint, the head and
pooling, the input size and the batch dimension (dynamic), and this package's version.
Formats the runtime does not read itself (Keras files) are not cached.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from .. import usercache

FORMAT = 2  # of what a network entry holds; bumped when that changes (2: only IRs and files measured first)


def network_key(spec, runtime: str, runtime_version: str, precision: str, hint: str, device: str) -> str | None:
    """The key of ``spec`` compiled as asked; ``None`` when it is not cached (the cache is off,
    a format the runtime does not read itself, or a file that cannot be read)."""
    if not _wanted(spec):
        return None
    source = spec.weights
    try:
        if source.random:
            weights = "random"
        elif source.format == "legacy-h5":
            weights = [usercache.fingerprint(source.path)]
        elif source.format == "openvino-ir":
            weights = [usercache.fingerprint(p) for p in (source.path, source.path.with_suffix(".bin"))]
        else:
            return None
    except OSError:
        return None
    return usercache.key_text({
        "kind": "network", "format": FORMAT, "runtime": runtime, "runtime_version": runtime_version,
        "device": device, "cpu": _cpu(), "precision": precision, "threads": spec.threads, "hint": hint,
        "include_top": spec.include_top, "pooling": spec.pooling, "input_size": spec.input_size,
        "batch": "dynamic", "weights_format": source.format, "weights": weights})


def _wanted(spec) -> bool:
    return usercache.enabled() and getattr(spec, "cache", True) is not False


def _cpu() -> dict:
    from ..system import cpu_info

    model, flags = cpu_info()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"model": model, "flags": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
            "cores": os.cpu_count(), "usable": usable}


def load(key: str | None) -> tuple[dict, memoryview] | None:
    """``(header, compiled network's bytes)`` for ``key``, or ``None``: build it (and ``store``)."""
    if key is None:
        return None
    path = usercache.entry_path("networks", key)
    found = usercache.read_entry(path, key) if path is not None else None
    if found is not None:
        usercache.say("compiled network loaded from %s", path)
    return found


def unusable(key: str, why: str) -> None:
    """The runtime could not import the entry for ``key`` (``why``): removed, with one warning."""
    path = usercache.entry_path("networks", key, create=False)
    if path is not None:
        usercache.note(f"{path}: the cache entry cannot be loaded ({why}): rebuilt")
        try:
            path.unlink()
        except OSError:
            pass


def store(key: str | None, header: dict, payload: Callable[[], memoryview]) -> bool:
    """Keep a compiled network (``payload()``: its bytes) under ``key``, unless a weights file changed
    while it was read; then the least recently used entries go until the cache fits its bound. Any
    failure is one warning: the run goes on with the network it has."""
    if key is None:
        return False
    path = usercache.entry_path("networks", key)
    if path is None or not _files_unchanged(key):  # a file changed while it was read: not this network
        return False
    try:
        data = payload()
    except Exception as e:  # noqa: BLE001 - the runtime could not export it: not cached
        usercache.note(f"the compiled network cannot be cached ({type(e).__name__}: {e})")
        return False
    if memoryview(data).nbytes > usercache.max_bytes() or not usercache.write_entry(path, key, header, data):
        return False
    usercache.evict(keep=path)
    return True


def _files_unchanged(key: str) -> bool:
    """Every file in ``key`` still has the fingerprint it had."""
    import json

    files = json.loads(key).get("weights")
    try:
        return not isinstance(files, list) or all(usercache.fingerprint(f["path"]) == f for f in files)
    except OSError:
        return False
