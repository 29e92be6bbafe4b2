"""``terramind embed-series --series S2L2A=DIR [--series DEM=dem.tif] -o emb.npy``: embed one time series.

Each ``--series`` is a folder of GeoTIFFs with the date in their names (``tile_2021-06-01.tif``), a CSV of
``path,date[,modality]`` rows, an ImpactMesh-layout ``.zarr.zip``, or one GeoTIFF (a static modality such as
DEM, given at every date). The encoder runs on every date; ``--aggregate mean|max`` writes one vector for the
series (over its valid dates), ``--aggregate none`` one vector per date (rows named ``<group>@YYYY-MM-DD``,
NaN for a date without valid pixels). Sides that are not multiples of 16 are mirror-padded, as ``embed`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from terramind.cli import _args
from terramind.core.optional import require


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``embed-series`` subcommand."""
    p = sub.add_parser(
        "embed-series",
        help="embed a time series: one vector per date or one for the series (.npy or .parquet)",
        description="Embed a time series with the TerraMind encoder run on every date; writes the array and "
        "the row names. Modalities on one date axis are encoded together (--group date).",
    )
    _args.add_series(p)
    _args.add_output(p, "emb.npy (+ emb.names.txt) or emb.parquet (needs terramind[embed])")
    _args.add_model(p)
    _args.add_weights(p, tokenizers=False)
    p.add_argument(
        "--aggregate",
        choices=["mean", "max", "none"],
        default="mean",
        help="combine the valid dates by mean or max, or none: one embedding per date (default mean)",
    )
    p.add_argument(
        "--group",
        choices=["date", "modality"],
        default="date",
        help="date: modalities share one date axis and are encoded together; modality: one series each "
        "(default date)",
    )
    _args.add_max_dates(p)
    _args.add_device(p)
    _args.add_overwrite(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the series, embed it and write the output."""
    import numpy as np
    import torch

    from terramind.api.models import create_backbone
    from terramind.data.padding import pad_to_multiple
    from terramind.data.series import (
        Series,
        SeriesDataset,
        SeriesSample,
        collate_series,
        date_of,
        series_source,
    )
    from terramind.data.tiles import modality_inputs
    from terramind.evaluate.embeddings import write_embeddings

    temporal = require("terramind.finetune.temporal", "train")
    paths: dict[str, Path] = args.series
    specs = modality_inputs(list(paths), {}, {}, {}, {})
    name = next(iter(paths.values())).name
    sample = SeriesSample(name, {m: series_source(p, m) for m, p in paths.items()})
    batch = collate_series([SeriesDataset([sample], specs, max_steps=args.max_steps)[0]])["inputs"]
    padded = {
        m: torch.from_numpy(pad_to_multiple(x.numpy())[0]).to(args.device) for m, x in batch.inputs.items()
    }
    series = Series(padded, batch.times, batch.valid)
    encoder = create_backbone(args.model, list(paths), weights=_args.library_weights(args.weights)).to(
        args.device
    )
    aggregator = "mean" if args.aggregate == "none" else args.aggregate
    backbone = temporal.TemporalBackbone(
        encoder, aggregator, group=args.group, max_steps=args.max_steps, freeze_encoder=True
    ).eval()
    out = temporal.embed_series(backbone, series, per_date=args.aggregate == "none")
    if isinstance(out, dict):
        names, rows = [], []
        for group, emb in out.items():
            times = series.times[group.split("+")[0]][0] if group != "static" else torch.zeros(1)
            names += [f"{group}@{date_of(float(t)).isoformat()}" for t in times]
            rows.append(emb[0].float().cpu().numpy())
        array = np.concatenate(rows)
    else:
        names, array = [name], out.float().cpu().numpy()
    write_embeddings(args.output, names, array, overwrite=args.overwrite)
    print(f"wrote {array.shape} embeddings of the series {name!r} to {args.output}")
    return 0
