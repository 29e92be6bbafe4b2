"""``terramind inspect FILE --modality M``: check a tile against the catalog and draw its quicklook.

FILE is anything the scene commands read: a GeoTIFF/COG (local or a URL), a band-files folder or ``.SAFE``,
a STAC item, or (``--input M=...``) band files as a list or glob; the size of a scene that is not a multiple
of the patch is a note (the commands pad it), not an error. Sources other than one raster file are read
through :func:`terramind.scene.scene_source` strip by strip (bands stacked on the finest grid).

Exit codes: 0 when the tile has no validation errors, 1 when it has some (they are listed), 2 for usage
errors (missing or unreadable file, wrong band count, non-finite values, unknown modality, missing output
folder), which ``terramind.cli.main`` prints as one line.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from terramind.cli import _args
from terramind.core.errors import InputError
from terramind.data.geotiff import MAX_READ_BYTES, Raster, read_raster
from terramind.data.validate import (
    BandStats,
    Finding,
    TileSummary,
    band_stats,
    summarize_file,
    summarize_strips,
    validate_tile,
)
from terramind.modalities import ModalitySpec, get_modality
from terramind.scene import scene_source
from terramind.scene.stac import is_stac_item
from terramind.viz import save_quicklook
from terramind.viz.quicklook import DEFAULT_RESOLUTION

TILE_ERRORS = 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` subcommand."""
    parser = sub.add_parser(
        "inspect",
        help="validate a GeoTIFF tile against a modality and write a quicklook",
        description="Report size, georeference, per-band statistics against the pretraining statistics, "
        "and problems (wrong bands, +1000 S2 offset, 0-1 scaling, ...). Exit 0: no errors, 1: the tile has "
        "validation errors, 2: usage error.",
    )
    _args.add_scene_tile_input(parser)
    parser.add_argument("--png", type=Path, metavar="OUT.png", help="write a quicklook PNG here")
    _args.add_json(parser)
    _args.add_sensors(parser)
    _args.add_check(parser, _check_png)
    parser.set_defaults(func=run)


def _check_png(args: argparse.Namespace) -> None:
    """Fail before any work when the quicklook could not be written."""
    path: Path | None = args.png
    if path is None:
        return
    if path.suffix.lower() != ".png":
        raise InputError(f"--png {str(path)!r}: the quicklook is a PNG, name it *.png")
    _args.check_output_file(path, overwrite=True)


def _read_whole(source: Any, spec: ModalitySpec, summary: TileSummary) -> Raster:
    """Read a scene source whole for its quicklook (refused above the whole-read limit)."""
    georef = summary.georef
    size = georef.width * georef.height * summary.bands * 4
    if size > MAX_READ_BYTES:
        raise InputError(
            f"{str(summary.path)!r} is {georef.width}x{georef.height} px: too large for a quicklook; "
            f"drop --png"
        )
    data, valid = source.read_rows(0, georef.height)
    return Raster(np.where(valid[None], data[spec.name], np.nan), georef, summary.path)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _report(
    summary: TileSummary, spec: ModalitySpec, stats: list[BandStats], findings: list[Finding]
) -> dict[str, Any]:
    georef = summary.georef
    return {
        "file": str(summary.path),
        "modality": spec.name,
        "width": georef.width,
        "height": georef.height,
        "bands": summary.bands,
        "dtype": str(summary.dtype),
        "crs": georef.crs.to_string() if georef.crs else None,
        "transform": list(georef.transform)[:6],
        "resolution": list(georef.resolution),
        "resolution_unit": georef.crs.linear_units if georef.crs and georef.crs.is_projected else None,
        "time": georef.time.isoformat() if georef.time else None,
        "nodata": georef.nodata,
        "band_stats": [
            {
                "band": s.name,
                "min": _finite(s.min),
                "mean": _finite(s.mean),
                "max": _finite(s.max),
                "pretrain_mean": s.pretrain_mean,
                "pretrain_std": s.pretrain_std,
            }
            for s in stats
        ],
        "findings": [{"level": f.level, "message": f.message} for f in findings],
        "errors": sum(f.level == "error" for f in findings),
        "warnings": sum(f.level == "warning" for f in findings),
    }


def _stats_table(report: dict[str, Any]) -> list[str]:
    rows = [f"  {'band':<16} {'min':>10} {'mean':>10} {'max':>10}   pretraining mean ± std"]
    for s in report["band_stats"]:
        values = [f"{v:>10.4g}" if v is not None else f"{'-':>10}" for v in (s["min"], s["mean"], s["max"])]
        rows.append(
            f"  {s['band']:<16} {' '.join(values)}   {s['pretrain_mean']:.4g} ± {s['pretrain_std']:.4g}"
        )
    return rows


def _text(report: dict[str, Any], spec: ModalitySpec) -> str:
    origin = report["transform"][2], report["transform"][5]
    verdict = (
        f"tile has {report['errors']} validation error(s): fix them before using it as {spec.name}"
        if report["errors"]
        else f"OK for {spec.name} ({report['warnings']} warning(s))"
    )
    lines = [
        f"file        {report['file']}",
        f"modality    {spec.name}: {spec.description}",
        f"size        {report['width']} x {report['height']} px, {report['bands']} band(s), "
        f"{report['dtype']}",
        f"crs         {report['crs'] or 'none'}",
        f"resolution  {report['resolution'][0]:g} x {report['resolution'][1]:g} "
        f"{report['resolution_unit'] or 'CRS units'} (origin {origin[0]:.2f}, {origin[1]:.2f})",
        f"time        {report['time'] or 'not tagged'}",
        f"nodata      {report['nodata'] if report['nodata'] is not None else 'none'}",
        "",
        *_stats_table(report),
        "",
        "findings",
        *(f"  {f['level']:<8} {f['message']}" for f in report["findings"]),
        "",
        f"result: {verdict}",
    ]
    if report.get("quicklook"):
        lines.append(f"quicklook: {report['quicklook']}")
    return "\n".join(lines)


STRIP_ROWS = 256  # rows per read of a scene source (as the scene pre-scan reads)
INVALID = -9999.0  # what an invalid pixel of a scene source is counted as (nodata)


def _is_raster(value: object) -> bool:
    return isinstance(value, Path) and not value.is_dir() and not is_stac_item(value)


def _source_summary(args: argparse.Namespace, spec: ModalitySpec) -> tuple[TileSummary, Any]:
    """Summarise a band-files folder, band list or STAC item strip by strip; return it and its source."""
    source = scene_source({spec.name: args.file})
    georef = replace(source.georef, nodata=INVALID)

    def strips() -> Iterator[np.ndarray]:
        for top in range(0, georef.height, STRIP_ROWS):
            data, valid = source.read_rows(top, min(STRIP_ROWS, georef.height - top))
            yield np.where(valid[None], data[spec.name], np.float32(INVALID))

    label = args.file if isinstance(args.file, Path) else Path(str(args.file[0])).parent
    return summarize_strips(label, georef, strips(), spec), source


def run(args: argparse.Namespace) -> int:
    """Inspect one tile; return 0 (no errors), 1 (validation errors)."""
    spec = get_modality(args.modality)
    if _is_raster(args.file):
        summary = summarize_file(args.file, spec)  # window by window: memory does not grow with the file
        source = None
    else:
        summary, source = _source_summary(args, spec)
    findings = validate_tile(summary, spec)
    report = _report(summary, spec, band_stats(summary, spec), findings)
    if args.png is not None:
        raster = read_raster(args.file, spec) if source is None else _read_whole(source, spec, summary)
        crs = raster.georef.crs
        resolution = (
            raster.georef.resolution[0] if crs is not None and crs.is_projected else DEFAULT_RESOLUTION
        )
        title = f"{summary.path.name} ({spec.name})"
        report["quicklook"] = str(
            save_quicklook(args.png, spec, raster.data, title=title, resolution=resolution)
        )
    print(json.dumps(report, indent=2) if args.json else _text(report, spec))
    return TILE_ERRORS if report["errors"] else 0
