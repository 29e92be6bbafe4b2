"""``terramind export``: the backbone, a tokenizer encoder or a diffusion decoder step (ONNX, torch.export).

Example::

    terramind export --model terramind_v1_tiny --weights random --what backbone --format onnx -o backbone.onnx
    terramind export --what decoder-step --modality S1RTC --format torch-export -o s1rtc_step.pt2

The file is checked against the eager module on the same input before it is written (fp32, relative error
at most 1e-4; ONNX through onnxruntime) and both are timed; the command prints one line with the result.
Shapes are fixed to ``--tile`` and ``--batch-size``. ``backbone`` maps a standardized image to every block's
features, ``tokenizer-encoder`` an image to FSQ codes and token ids, ``decoder-step`` ``(x_t, t, codes)`` to
the UNet's x0 (see ``terramind.api.export``). ``--modality`` defaults to S2L2A (decoder-step: S1RTC).
ONNX needs ``pip install 'terramind[export]'``.
"""

from __future__ import annotations

import argparse

from terramind.cli import _args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        help="export the backbone, a tokenizer encoder or a decoder step (ONNX, torch.export), checked",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _args.add_model(p)
    _args.add_weights(p, tokenizers=False)
    p.add_argument("--what", required=True, choices=("backbone", "tokenizer-encoder", "decoder-step"))
    p.add_argument("--format", required=True, choices=("onnx", "torch-export"), help="file format")
    p.add_argument(  # the spelling and help of every command's --modality (tests/cli/test_flags.py)
        "-m", "--modality", type=_args.modality, help="the tile's modality, e.g. S2L2A, S1RTC, DEM, LULC"
    )
    p.add_argument("--tile", type=_args.tile_size, default=224, help="tile side in pixels (multiple of 16)")
    _args.add_batch_size(p)
    _args.add_output(p, "the exported file (.onnx or .pt2)")
    _args.add_overwrite(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, check and report."""
    from terramind.api.export import export

    if args.weights == "random":
        _args.note("weights are randomly initialised (untrained): the export is for testing the pipeline")
    report = export(
        args.what, args.format, args.output, model=args.model, weights=_args.library_weights(args.weights),
        modality=args.modality, tile=args.tile, batch=args.batch_size, overwrite=args.overwrite,
    )  # fmt: skip
    errors = ", ".join(f"{name} {err:.1e}" for name, err in report.relative_errors.items())
    runtime = "onnxruntime" if args.format == "onnx" else "exported program"
    print(
        f"wrote {report.path} ({report.size_bytes / 2**20:.1f} MB); relative error vs eager: {errors}; "
        f"eager {report.eager_ms:.1f} ms, {runtime} {report.exported_ms:.1f} ms per call"
    )
    return 0
