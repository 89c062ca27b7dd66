"""``xception similar``: nearest images to queries, or near-duplicate pairs, from an embeddings file."""

from __future__ import annotations

import json

import click

from .cacheopt import no_cache_option
from .common import (
    CONTEXT,
    FatalError,
    friendly_errors,
    input_list,
    pick_format,
    precision_option,
    report_output,
    runtime_option,
)


@click.command(context_settings=CONTEXT)
@click.argument("queries", nargs=-1, metavar="[QUERY]...")
@click.option("--embeddings", "embeddings_file", required=True, type=click.Path(),
              help="The output of `xception embed` (npz, parquet or jsonl), or the folder of shards "
              "`embed --ray -o DIR/` wrote.")
@click.option("-k", "--top-k", type=click.IntRange(1, 10000), default=5, show_default=True,
              help="Neighbours per query.")
@click.option("--duplicates", is_flag=True, help="List pairs of stored images at least --threshold alike.")
@click.option("--threshold", type=click.FloatRange(-1, 1), default=0.95, show_default=True,
              help="Cosine similarity for --duplicates.")
@click.option("--max-pairs", type=click.IntRange(1), default=100_000, show_default=True,
              help="List at most N pairs with --duplicates: the most similar (more are counted on stderr, exit 1).")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "jsonl", "html"]), default=None,
              help="table on a terminal, jsonl otherwise; html: a page of the --duplicates groups (-o dups.html).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to FILE.")
@click.option("--weights", default=None, metavar="imagenet|PATH|none",
              help="Weights for embedding the queries: those the embeddings file was made with (a file is "
              "checked against its recorded md5) [default: imagenet, when the file was made with them; a weights "
              "file must be named].")
@precision_option
@runtime_option
@no_cache_option
@friendly_errors
def similar(queries, embeddings_file, top_k, duplicates, threshold, max_pairs, fmt, output, weights, precision,
            runtime):
    """The stored images most like each QUERY (cosine similarity), or near-duplicate pairs.

    \b
    Examples:
      xception embed ~/Photos -o photos.npz
      xception similar beach.jpg --embeddings photos.npz -k 10
      xception similar --duplicates --threshold 0.97 --embeddings photos.npz
      find ~/new -name '*.jpg' | xception similar - --embeddings photos.npz

    Queries are embedded on the fly with the same pooling and normalisation as the file (use the
    same --weights). Brute force in NumPy: fine up to a few hundred thousand stored images.
    """
    import sys

    import numpy as np

    from ..output import load_embeddings
    from ..output.paths import display_path, shown
    from ..similar import nearest, top_pairs, unusable

    if queries:
        queries = input_list(queries)  # '-': paths from stdin
    if bool(queries) == duplicates:
        raise click.UsageError("give QUERY images, or --duplicates (not both)")
    if threshold != threshold:  # NaN
        raise click.BadParameter("must be a number", param_hint="--threshold")
    from ..weights import weights_files

    # the output is checked and claimed before any work, and published only when all went well
    with report_output(output, [embeddings_file, *queries], weights_files(weights)) as stream:
        fmt = pick_format(fmt, output, ("table", "jsonl", "html") if duplicates else ("table", "jsonl"), "jsonl",
                          "similar")  # after the output is checked
        table = load_embeddings(embeddings_file)  # OutputError when it holds no embeddings
        bad_rows = np.flatnonzero(unusable(table.embeddings))
        if len(bad_rows):  # they would match nothing (or everything): left out, and said so
            names = ", ".join(shown(table.paths[i]) for i in bad_rows[:3]) + (", ..." if len(bad_rows) > 3 else "")
            click.echo(f"warning: {shown(embeddings_file)}: {len(bad_rows)} stored embedding(s) are zero or not "
                       f"finite and match nothing: {names}", err=True)
            dropped = set(bad_rows.tolist())
            keep = [i for i in range(len(table.paths)) if i not in dropped]
            table.paths, table.vectors = [table.paths[i] for i in keep], [table.vectors[i] for i in keep]
        db = table.embeddings
        bad, capped = [], False
        if duplicates:
            pairs, found = top_pairs(db, table.paths, threshold, max_pairs)
            capped = found > len(pairs)
            if capped:
                click.echo(f"warning: {shown(embeddings_file)}: {found:,} pairs at or above {threshold}; only the "
                           f"{len(pairs):,} most similar are listed (--max-pairs {max_pairs:,})", err=True)
            records = [{"a": display_path(a)[0], "b": display_path(b)[0], "similarity": round(s, 6)}
                       for a, b, s in pairs]
        else:
            from ..classifier import Embedder
            from ..config import FEATURES
            from ..weights.recorded import weights_for

            if db.shape[1] != FEATURES:  # before any weights are looked for (or downloaded)
                raise FatalError(f"{shown(embeddings_file)}: holds {db.shape[1]}-value embeddings; a query's "
                                 f"embedding has {FEATURES} values (xception embed)")
            meta = table.meta
            # only weights the user named (or imagenet): never a file because the embeddings file names it
            weights, which = weights_for(meta, weights, shown(embeddings_file))
            click.echo(f"embedding the queries with {shown(which)}", err=True)
            embedder = Embedder(weights=weights, pooling=meta.get("pooling") or "avg",
                                normalize=bool(meta.get("normalize")), resize=meta.get("resize"),
                                precision=precision, runtime=runtime)
            got = embedder.records(list(queries))
            bad = [r for r in got if r.error is not None]
            if len(bad) == len(got):
                raise FatalError(f"{shown(bad[0].path)}: {bad[0].error}")
            for r in bad:
                click.echo(f"warning: {shown(r.path)}: {r.error}", err=True)
            good = [r for r in got if r.error is None]
            if good[0].embedding.shape[0] != db.shape[1]:
                raise FatalError(f"{embeddings_file}: holds {db.shape[1]}-value embeddings, the query gives "
                                 f"{good[0].embedding.shape[0]}")
            matches = nearest(np.stack([r.embedding for r in good]), db, table.paths, top_k)
            records = []
            for r, ms in zip(good, matches):
                neighbors = [m.to_dict() | {"path": display_path(m.path)[0]} for m in ms]  # text, whatever the bytes
                records.append({"path": display_path(r.path)[0], "neighbors": neighbors})
        if fmt == "html":
            from ..output.html import duplicates_page

            stream.write(duplicates_page(pairs, threshold, embeddings_file))
        elif fmt == "jsonl":
            stream.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        else:
            from .render import console

            if not records:
                stream.write(f"no pairs at or above {threshold}\n" if duplicates else "")
            else:
                console(file=stream).print(pairs_table(records) if duplicates else neighbours_table(records))
    if capped or (not duplicates and bad):
        sys.exit(1)  # some queries could not be read, or pairs were left out (each said so on stderr)


def pairs_table(records: list[dict]):
    """Near-duplicate pairs (``{"a", "b", "similarity"}``) as a table; paths fold at separators."""
    from .render import table

    return table([("Image", "path"), ("Duplicate of", "path"), ("Similarity", "number")],
                 [[r["a"], r["b"], f"{r['similarity']:.4f}"] for r in records])


def neighbours_table(records: list[dict]):
    """Each query (``{"path", "neighbors"}``) and its nearest stored images, a rule between queries."""
    from .render import table

    rows, sections = [], []
    for r in records:
        rows += [[r["path"] if m["rank"] == 1 else "", m["rank"], m["path"], f"{m['similarity']:.4f}"]
                 for m in r["neighbors"]]
        sections.append(len(rows) - 1)
    return table([("Query", "path"), ("#", "number"), ("Most similar", "path"), ("Similarity", "number")], rows,
                 sections=sections[:-1])
