"""``terramind info``: the modalities, the model sizes, and where the weights come from and are cached.

The model-size table below is a stop-gap until the model package's registry of released variants exists;
its numbers are the official configurations (spec section 2.1, parameter counts measured on the reference).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from huggingface_hub import constants, try_to_load_from_cache

from terramind.modalities import MODALITIES, ModalitySpec


@dataclass(frozen=True)
class ModelSize:
    """One released TerraMind v1 size.

    Attributes:
        name: ``tiny``, ``small``, ``base`` or ``large``.
        dim: Token width.
        encoder_depth: Encoder blocks.
        decoder_depth: Decoder blocks.
        heads: Attention heads (head width 64).
        params_m: Parameters of the full encoder-decoder with all v1 embeddings, millions.
    """

    name: str
    dim: int
    encoder_depth: int
    decoder_depth: int
    heads: int
    params_m: float

    @property
    def repo(self) -> str:
        """Hugging Face repository of the weights."""
        return f"ibm-esa-geospatial/TerraMind-1.0-{self.name}"

    @property
    def filename(self) -> str:
        """Checkpoint file inside :attr:`repo`."""
        return f"TerraMind_v1_{self.name}.pt"


MODEL_SIZES = (
    ModelSize("tiny", 192, 12, 4, 3, 52.06),
    ModelSize("small", 384, 12, 6, 6, 124.26),
    ModelSize("base", 768, 12, 12, 12, 376.09),
    ModelSize("large", 1024, 24, 24, 16, 942.10),
)

# Where each tokenizer artefact is published: (repository, file) per tokenizer name (spec section 7.1).
TOKENIZER_FILES: dict[str, tuple[str, str]] = {
    **{
        f"terramind_v1_tokenizer_{m.lower()}": (
            f"ibm-esa-geospatial/TerraMind-1.0-Tokenizer-{m}",
            f"TerraMind_Tokenizer_{m}.pt",
        )
        for m in ("S2L2A", "S1GRD", "S1RTC", "DEM", "LULC", "NDVI")
    },
    "terramind_v1_coords_tokenizer": ("ibm-esa-geospatial/TerraMind-1.0-Tokenizer-Coords", "config.json"),
    "terramind_v01_caption_tokenizer": ("FAST-EO/TerraMind-v0.1-Tokenizer-Text", "config.json"),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    parser = sub.add_parser("info", help="list modalities, model sizes and where weights are cached")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _cached(repo: str, filename: str) -> bool:
    return isinstance(try_to_load_from_cache(repo, filename), str)


def _modality_row(spec: ModalitySpec) -> dict[str, Any]:
    repo, filename = TOKENIZER_FILES.get(spec.tokenizer or "", (None, None))
    return {
        "name": spec.name,
        "kind": spec.input_kind.value if spec.input_kind else None,
        "generable": spec.generable,
        "bands": list(spec.bands),
        "unit": spec.unit,
        "versions": list(spec.versions),
        "tokenizer": spec.tokenizer,
        "tokenizer_repo": repo,
        "tokenizer_file": filename,
        "tokenizer_cached": _cached(repo, filename) if repo and filename else None,
    }


def _model_row(size: ModelSize) -> dict[str, Any]:
    return {
        "name": size.name,
        "dim": size.dim,
        "encoder_depth": size.encoder_depth,
        "decoder_depth": size.decoder_depth,
        "heads": size.heads,
        "params_m": size.params_m,
        "repo": size.repo,
        "file": size.filename,
        "cached": _cached(size.repo, size.filename),
    }


def collect() -> dict[str, Any]:
    """Everything ``terramind info`` reports, as plain data."""
    return {
        "modalities": [_modality_row(m) for m in MODALITIES.values()],
        "models": [_model_row(s) for s in MODEL_SIZES],
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
