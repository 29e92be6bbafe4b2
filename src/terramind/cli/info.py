"""``terramind info``: the modalities, the model sizes, and where the weights come from and are cached.

Every fact comes from the catalog and the release records in :mod:`terramind.checkpoints`; parameter counts
are measured on the architecture itself (built on the meta device, so nothing is allocated).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from huggingface_hub import constants, try_to_load_from_cache

from terramind.checkpoints.io import HubFile
from terramind.checkpoints.models import MODELS, ModelRecord
from terramind.checkpoints.tokenizers import TOKENIZERS
from terramind.modalities import MODALITIES, ModalitySpec
from terramind.model import TerraMind


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    parser = sub.add_parser("info", help="list modalities, model sizes and where weights are cached")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _cached(hub: HubFile) -> bool:
    return isinstance(try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision), str)


def _params(record: ModelRecord) -> int:
    """Parameters of the full encoder-decoder with every v1 embedding (tied weights counted once)."""
    with torch.device("meta"):
        return sum(p.numel() for p in TerraMind(record.config).parameters())


def _modality_row(spec: ModalitySpec) -> dict[str, Any]:
    record = TOKENIZERS.get(spec.name)
    hub = record.hub if record is not None else None
    return {
        "name": spec.name,
        "kind": spec.input_kind.value if spec.input_kind else None,
        "generable": spec.generable,
        "bands": list(spec.bands),
        "unit": spec.unit,
        "versions": list(spec.versions),
        "tokenizer": spec.tokenizer,
        "tokenizer_repo": hub.repo_id if hub else None,
        "tokenizer_file": hub.filename if hub else None,
        "tokenizer_cached": _cached(hub) if hub else None,
    }


def _model_row(record: ModelRecord) -> dict[str, Any]:
    config = record.config
    return {
        "name": record.name.removeprefix("terramind_v1_"),
        "dim": config.dim,
        "encoder_depth": config.encoder_depth,
        "decoder_depth": config.decoder_depth,
        "heads": config.num_heads,
        "params_m": _params(record) / 1e6,
        "repo": record.hub.repo_id,
        "file": record.hub.filename,
        "cached": _cached(record.hub),
    }


def collect() -> dict[str, Any]:
    """Everything ``terramind info`` reports, as plain data."""
    return {
        "modalities": [_modality_row(m) for m in MODALITIES.values()],
        "models": [_model_row(r) for r in MODELS.values()],
        "weights": {
            "cache": str(constants.HF_HUB_CACHE),
            "hf_home": str(constants.HF_HOME),
            "offline": bool(constants.HF_HUB_OFFLINE),
            "endpoint": constants.ENDPOINT,
        },
    }


def _yes_no(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "no"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _text(info: dict[str, Any]) -> str:
    mods = [["modality", "kind", "generable", "bands", "unit", "tokenizer (hub repo)", "cached"]]
    mods += [
        [
            m["name"], m["kind"] or "-", "yes" if m["generable"] else "no", str(len(m["bands"])), m["unit"],
            m["tokenizer_repo"] or "-", _yes_no(m["tokenizer_cached"]),
        ]
        for m in info["modalities"]
    ]  # fmt: skip
    bands = [f"  {m['name']:<8} {' '.join(m['bands'])}" for m in info["modalities"] if m["bands"]]
    models = [["size", "dim", "enc depth", "dec depth", "heads", "params", "hub repo / file", "cached"]]
    models += [
        [
            m["name"], str(m["dim"]), str(m["encoder_depth"]), str(m["decoder_depth"]), str(m["heads"]),
            f"{m['params_m']:.1f} M", f"{m['repo']} / {m['file']}", _yes_no(m["cached"]),
        ]
        for m in info["models"]
    ]  # fmt: skip
    weights = info["weights"]
    return "\n".join(
        [
            "Modalities (TerraMind v1; caption is v0.1 only)",
            *_table(mods),
            "",
            "Band order",
            *bands,
            "",
            "Model sizes (patch 16, 224 px; params of the full encoder-decoder)",
            *_table(models),
            "",
            f"Weights are downloaded from {weights['endpoint']} on first use and cached in",
            f"  {weights['cache']}  (set HF_HOME or HF_HUB_CACHE to move it"
            f"{'; HF_HUB_OFFLINE is set: no downloads' if weights['offline'] else ''})",
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Print the catalog, model sizes and weight locations."""
    info = collect()
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 0
