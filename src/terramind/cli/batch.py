"""``terramind batch JOB --manifest M -o DIR [options of JOB] [--workers N] [--address ray://HOST:PORT]``.

Runs one job over many scenes on Ray (extra ``batch``): ``generate``, ``embed`` (embedding products),
``zeroshot-water`` or ``predict`` (a fine-tuned checkpoint), with the same options as the single-scene
command. The manifest is a CSV or Parquet table with one column per input modality (``S2L2A``, ``S1RTC``,
...) and an optional ``name`` column, a folder ``DIR/<MODALITY>/<scene>.tif``, or a STAC ItemCollection.
Each scene's outputs go to ``DIR/<name>/``; ``DIR/results.parquet`` says per scene whether it is done or
failed and why, and ``DIR/collection.json`` is a STAC collection of all outputs. Rerunning the command skips
the done scenes and resumes the others. Exit code 1 when any scene failed.

Example::

    terramind batch generate --manifest scenes.csv -o out/ --to LULC --workers 2 --threads-per-worker 1
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from terramind.cli import _args
from terramind.core.errors import TerraMindError
from terramind.core.optional import require
from terramind.scene.run import DenseTask

FAILED = 1  # exit code when any scene failed (the results table says which and why)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``batch`` with one subcommand per job."""
    parser = sub.add_parser(
        "batch", help="run generate, embed, zeroshot-water or predict over many scenes on Ray"
    )
    jobs = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    for name, (help_text, add) in JOB_PARSERS.items():
        p = jobs.add_parser(name, help=help_text, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        p.add_argument(
            "--manifest", required=True, type=_manifest, metavar="M",
            help="CSV/Parquet (a column per modality, optional 'name'), a folder DIR/<MOD>/<scene>.tif or a "
            "STAC ItemCollection",
        )  # fmt: skip
        _args.add_output(p, "batch folder: <scene>/ per scene, results.parquet, collection.json", folder=True)
        add(p)
        _args.add_batch_size(p)
        _args.add_device(p)
        _args.add_cluster(p)
        _args.add_overwrite(p)
        p.set_defaults(func=run, job_kind=name)


def _manifest(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"manifest {text!r} does not exist")
    return path


def _embed_options(p: argparse.ArgumentParser) -> None:
    from terramind.cli.embed import add_product_options

    _args.add_model(p)
    _args.add_weights(p, tokenizers=False)
    add_product_options(p)
    _args.add_layer(p)
    _args.add_offsets(p)
    _args.add_tiling(p)
    _args.add_precision(p)


def _water_options(p: argparse.ArgumentParser) -> None:
    _args.add_water_options(p)
    _args.add_tiling(p)


def _predict_options(p: argparse.ArgumentParser) -> None:
    _args.add_task_checkpoint(p)
    _args.add_tiling(p)
    _args.add_precision(p)


JOB_PARSERS = {
    "generate": (
        "generate modalities for every scene (as `terramind generate`)",
        _args.add_generation_options,
    ),
    "embed": ("an embedding product per scene (as `terramind embed --scene`)", _embed_options),
    "zeroshot-water": ("a water mask per scene (as `terramind zeroshot water`)", _water_options),
    "predict": ("a fine-tuned model's map per scene (as `terramind finetune scene`)", _predict_options),
}


def build_job(args: argparse.Namespace) -> Any:
    """Build the job record of the parsed command line (the one place that maps flags to a job)."""
    from terramind.batch import EmbedJob, GenerateJob, PredictJob, WaterJob

    common = {
        "tile": args.tile,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    if args.job_kind == "generate":
        from terramind.cli.generate import options_from_args

        return GenerateJob(
            tuple(args.to), args.model, args.weights, args.tokenizer_weights, options_from_args(args),
            args.seed, dict(args.offset), **common,
        )  # fmt: skip
    if args.job_kind == "embed":
        from terramind.cli.embed import FORMATS

        return EmbedJob(
            args.model, args.weights, FORMATS[args.format], args.pool, args.layer, dict(args.offset),
            args.precision, **common,
        )  # fmt: skip
    if args.job_kind == "zeroshot-water":
        return WaterJob(args.model, args.weights, args.tokenizer_weights, args.flooded_vegetation, args.seed,
                        **common)  # fmt: skip
    return PredictJob(tuple(map(str, args.config)), str(args.ckpt_path), load_task, args.precision, **common)


def load_task(config: Sequence[str], ckpt_path: str) -> DenseTask:
    """Build a fine-tuned dense task from config and checkpoint as ``finetune scene`` does (on a worker)."""
    from terramind.cli.finetune import load_dense_task

    return load_dense_task(config, ckpt_path, command="batch predict")


def run(args: argparse.Namespace) -> int:
    """Run the batch; 0 when every scene is done, 1 when any failed (the table says which and why)."""
    from terramind import batch

    require("ray", "batch")
    stac = _stac_available()
    if "random" in (getattr(args, "weights", None), getattr(args, "tokenizer_weights", None)):
        _args.note("running with RANDOM (untrained) weights: the outputs only exercise the pipeline and "
                   "carry no information")  # fmt: skip
    gpus = args.num_gpus_per_worker
    if args.device.startswith("cuda") and gpus == 0:  # Ray hides the GPUs from workers that reserve none
        gpus = 1.0
        _args.note(f"--device {args.device}: each worker reserves one GPU (--num-gpus-per-worker 1)")
    cluster = batch.Cluster(args.address, args.workers, args.threads_per_worker, gpus)
    report = batch.run(
        build_job(args), args.manifest, args.output, cluster=cluster, retries=args.retries,
        overwrite=args.overwrite, stac=stac,
    )  # fmt: skip
    for record in report.failed:
        print(f"failed: {record.name}: {record.error}")
    print(f"wrote {report.table}" + (f" and {report.collection}" if report.collection else ""))
    print(report.summary())
    return FAILED if report.failed else 0


def _stac_available() -> bool:
    try:
        require("pystac", "stac")
    except TerraMindError as err:
        _args.note(f"no STAC collection of the outputs: {err}")
        return False
    return True
