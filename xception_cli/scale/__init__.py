"""Past one machine: the predict (and embed) job on Ray Data, over local folders and object storage.

Decoding and preprocessing run as Ray tasks; inference runs in an actor pool whose actors each
build the network once, through the runtime layer, with as many threads as the CPUs they hold.
Records, schema, error records and exit codes are those of the local pipeline.

- Inputs (``uris``): files, folders, globs (as ``predict``), and URIs (``s3://bucket/prefix`` and
  whatever else pyarrow's file systems read). Objects are listed by the driver and read by the
  decoding tasks, so an unreadable, vanished or non-image object is an error record, never a
  failed job.
- The stages (``stages``): ``decode_batch`` (a task) and ``XceptionPredictor`` (an actor), the
  class to drop into your own ``ray.data.Dataset.map_batches``.
- Ray itself (``cluster``): join the address given, or start a local Ray and stop it at the end.
  S3 secrets never leave this process: a local Ray's workers inherit its environment; a cluster's
  nodes use their own credentials, and only the endpoint and region travel.
- The executor (``executor``): ``RayExecutor``, the records of ``jobs.PredictJob`` from Ray Data;
  the job writes them as it writes the local ones (``-o FILE`` in input order with ``--resume``,
  or shard files under ``-o DIR/`` / ``-o s3://bucket/prefix/``: ``output.shards``).
"""

from .cluster import init_ray, plan_actors, require_ray
from .stages import XceptionPredictor, build_dataset, decode_batch, record_from_json
from .uris import filesystem, is_uri, list_uri, read_bytes

__all__ = [
    "XceptionPredictor", "build_dataset", "decode_batch", "filesystem", "init_ray", "is_uri", "list_uri",
    "plan_actors", "read_bytes", "record_from_json", "require_ray",
]
