"""``terramind fewshot --embeddings emb.npy --labels labels.csv``: N-way K-shot prototype episodes.

Labels are a CSV of ``name,class`` rows (names as written by ``terramind embed``; a header row is
skipped when its class column is ``class`` or ``label``). Prints mean accuracy with its 95% interval.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from terramind.cli import _args
from terramind.core.errors import InputError
from terramind.evaluate.fewshot import few_shot


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fewshot`` subcommand."""
    p = sub.add_parser(
        "fewshot",
        help="few-shot classification of embeddings (nearest prototype, mean accuracy with 95%% CI)",
        description="Run N-way K-shot episodes on embeddings from `terramind embed` (paper: 5-way 1-shot, "
        "200 episodes).",
    )
    p.add_argument(
        "--embeddings", required=True, type=_args.input_file, help=".npy (with .names.txt) or .parquet"
    )
    p.add_argument("--labels", required=True, type=_args.input_file, help="CSV rows: name,class")
    p.add_argument("--ways", type=_args.positive_int, default=5, help="classes per episode (default 5)")
    p.add_argument(
        "--shots", type=_args.positive_int, default=1, help="support samples per class (default 1)"
    )
    p.add_argument(
        "--queries", type=_args.positive_int, default=15, help="query samples per class (default 15)"
    )
    p.add_argument("--episodes", type=_args.positive_int, default=200, help="episodes (default 200)")
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    _args.add_seed(p)
    _args.add_skip_bad(p)
    _args.add_json(p)
    p.set_defaults(func=run)


def read_labels(path: Path) -> dict[str, str]:
    """Name -> class from a ``name,class`` CSV."""
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"labels file {str(path)!r} is not a text CSV of name,class rows: {err}") from err
    if rows and rows[0][-1].strip().lower() in ("class", "label"):
        rows = rows[1:]
    bad = [r for r in rows if len(r) < 2]
    if bad:
        raise InputError(f"{str(path)!r}: rows must be 'name,class'; got {bad[0]}")
    return {r[0].strip(): r[1].strip() for r in rows}


def run(args: argparse.Namespace) -> int:
    """Run the episodes and print the result."""
    from terramind.evaluate.embeddings import read_embeddings  # every read error is one InputError

    names, embeddings = read_embeddings(args.embeddings)
    table = read_labels(args.labels)
    missing = [n for n in names if n not in table]
    if missing:
        raise InputError(f"{len(missing)} embedded tile(s) have no label in {args.labels}: {missing[:5]}")
    result = few_shot(
        embeddings,
        [table[n] for n in names],
        n_way=args.ways,
        k_shot=args.shots,
        n_query=args.queries,
        episodes=args.episodes,
        metric=args.metric,
        seed=args.seed,
        names=names,
        skip_bad=args.skip_bad,
    )
    if args.json:
        keys = ("mean", "ci95", "n_way", "k_shot", "n_query")
        summary = {k: getattr(result, k) for k in keys} | {"episodes": len(result.accuracies)}
        print(json.dumps(summary, allow_nan=False))
    else:
        print(result)
    return 0
