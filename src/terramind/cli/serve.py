r"""``terramind serve``: an HTTP API and a web page for generation and embeddings (extra ``serve``).

Example::

    terramind serve --model terramind_v1_base --weights hub --tokenizer-weights hub \\
        --outputs LULC,S1RTC,DEM --host 127.0.0.1 --port 8000

One process holds the model and the decoders of the served outputs, loaded once at start-up on a background
thread (``/readyz`` says when they are ready). Open ``http://HOST:PORT/`` for the page; the API is described
at ``/openapi.json``. Jobs are stored under ``--work-dir`` and survive a restart. Binding to an address other
than loopback without a token prints a warning: anyone who reaches the port can then use the model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from terramind.cli import _args
from terramind.core.errors import InputError
from terramind.core.optional import require
from terramind.serve import TOKEN_ENV

if TYPE_CHECKING:
    import torch

    from terramind.generation.generate import Generator

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"  # the repository's tiles (source checkouts)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="serve generation and embeddings over HTTP, with a web page (needs terramind[serve])",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _args.add_model(p)
    _args.add_weights(p)
    p.add_argument(
        "--outputs",
        type=_args.modality_list,
        default=["LULC", "S1RTC", "DEM"],
        metavar="MOD[,MOD...]",
        help="modalities the server generates; their decoders stay loaded (default LULC,S1RTC,DEM)",
    )
    p.add_argument(
        "--inputs",
        type=_args.modality_list,
        default=None,
        metavar="MOD[,MOD...]",
        help="input modalities accepted (default: every pixel image modality not in --outputs)",
    )
    _args.add_device(p)
    _args.add_precision(p)
    _args.add_serve_options(p)
    _args.add_check(p, _check_modalities)
    p.set_defaults(func=run)


def _check_modalities(args: argparse.Namespace) -> None:
    """Refuse outputs that cannot be generated and inputs that are also outputs, before anything loads."""
    from terramind.generation.generate import check_modalities

    check_modalities(_inputs(args), args.outputs)


def read_token(args: argparse.Namespace) -> str | None:
    """Return the bearer token: the first line of ``--token-file``, else ``$TERRAMIND_TOKEN``, else None.

    Raises:
        InputError: An empty token file.
    """
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
        if not token:
            raise InputError(f"--token-file {str(args.token_file)!r} is empty: write the token into it")
        return token
    return os.environ.get(TOKEN_ENV) or None


def run(args: argparse.Namespace) -> int:
    """Load the model in the background and serve until interrupted."""
    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    from terramind.serve.app import create_app
    from terramind.serve.config import ServeConfig, is_loopback
    from terramind.serve.host import ModelHost

    token = read_token(args)
    if token is None and not is_loopback(args.host):
        print(
            f"terramind serve: warning: listening on {args.host} without a token: anyone who reaches this "
            f"port can run the model and read its jobs; set --token-file or {TOKEN_ENV}",
            file=sys.stderr,
        )
    if args.weights == "random" or _args.tokenizer_weights(args) == "random":
        _args.note("serving RANDOM (untrained) weights: outputs only exercise the pipeline")
    cfg = ServeConfig(
        work_dir=args.work_dir, model=args.model, weights=args.weights, device=args.device,
        precision=args.precision, token=token, data_root=args.data_root,
        examples_dir=EXAMPLES if EXAMPLES.is_dir() else None, max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels, max_tiles=args.max_tiles, queue_size=args.queue_size,
        workers=args.workers, keep_hours=args.keep_hours, cors_origins=tuple(args.cors_origin or ()),
    )  # fmt: skip
    host = ModelHost(_generator_factory(args), device=args.device, backbone_factory=_backbone_factory(args))
    print(
        f"terramind serve: jobs in {args.work_dir}; page at http://{args.host}:{args.port}/", file=sys.stderr
    )
    uvicorn.run(create_app(cfg, host), host=args.host, port=args.port, log_level="warning")
    return 0


def _inputs(args: argparse.Namespace) -> list[str]:
    from terramind.serve.host import default_inputs

    return list(args.inputs or default_inputs(args.outputs))


def _generator_factory(args: argparse.Namespace) -> Callable[[], Generator]:
    from functools import partial

    from terramind.api.generation import create_generator

    return partial(
        create_generator, args.model, inputs=_inputs(args), outputs=args.outputs,
        weights=_args.library_weights(args.weights),
        tokenizer_weights=_args.library_weights(_args.tokenizer_weights(args)),
    )  # fmt: skip


def _backbone_factory(args: argparse.Namespace) -> Callable[[], torch.nn.Module]:
    from functools import partial

    from terramind.api.models import create_backbone

    return partial(create_backbone, args.model, _inputs(args), weights=_args.library_weights(args.weights))
