"""Classify a folder from Python and keep only confident labels.

usage: python examples/classify_folder.py DIR [--weights imagenet|PATH] [--min 0.5]

The same engine as `xception predict`, without Click: results stream batch by batch, in order,
and unreadable files come back as records with an `error` instead of stopping the run.
"""

import argparse

from xception_cli import Classifier, discover


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--min", type=float, default=0.5, help="minimum top-1 probability to report")
    args = ap.parse_args()

    paths = discover([args.folder]).paths
    clf = Classifier(weights=args.weights)
    for batch in clf.stream(((p, p) for p in paths), top_k=1):
        for record in batch:
            if record.error:
                print(f"{record.path}: skipped ({record.error})")
            elif record.predictions[0].probability >= args.min:
                best = record.predictions[0]
                print(f"{record.path}: {best.label} ({best.probability:.0%})")


if __name__ == "__main__":
    main()
