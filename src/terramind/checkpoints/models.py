"""One record per released TerraMind v1 model, and loading weights into models and backbones.

Official files are flat fp32 state dicts in the encoder-decoder's own key naming, which is also ours: no key
table is needed. What differs between uses is only *which* keys a module takes: the full model takes all of
them; a backbone takes its modalities' input embeddings and the encoder, and explicitly ignores the
decoder, the other modalities and any reference tokenizer weights. Everything else fails loudly.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from terramind.checkpoints.io import HubFile, LoadReport, load_into
from terramind.core.errors import CheckpointError, InputError
from terramind.model import CONFIGS, TerraMind, TerraMindBackbone, TerraMindConfig

REPO = "ibm-esa-geospatial/TerraMind-1.0-{}"


@dataclass(frozen=True)
class ModelRecord:
    """A released TerraMind model: its name, weights file and configuration.

    Attributes:
        name: Registry name (``terramind_v1_base``).
        hub: Where the official weights live.
        config: Architecture.
    """

    name: str
    hub: HubFile
    config: TerraMindConfig


def _record(size: str) -> ModelRecord:
    config = CONFIGS[f"terramind_v1_{size}"]
    return ModelRecord(config.name, HubFile(REPO.format(size), f"TerraMind_v1_{size}.pt"), config)


MODELS: Mapping[str, ModelRecord] = MappingProxyType(
    {r.name: r for r in (_record(s) for s in ("tiny", "small", "base", "large"))}
)


def model_record(name: str) -> ModelRecord:
    """Look up a released model by name (``terramind_v1_base``; ``base`` works too).

    Raises:
        InputError: For an unknown name, listing the valid ones.
    """
    full = name if name in MODELS else f"terramind_v1_{name}"
    if full not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown model {name!r}.{hint} Valid names: {', '.join(MODELS)}")
    return MODELS[full]


def check_size(config: TerraMindConfig, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Fail early, naming the right model, when a checkpoint is of another size.

    Raises:
        CheckpointError: When width or encoder depth differ from ``config``.
    """
    norm = state_dict.get("encoder_norm.weight")
    if norm is None:
        raise CheckpointError(
            f"{what} has no 'encoder_norm.weight': it is not a TerraMind model checkpoint (a tokenizer? a "
            f"checkpoint with prefixed keys?)"
        )
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.(\d+)\.", k))}
    dim, depth = norm.shape[0], max(blocks, default=-1) + 1
    if (dim, depth) != (config.dim, config.encoder_depth):
        match = [c.name for c in CONFIGS.values() if (c.dim, c.encoder_depth) == (dim, depth)]
        looks = f"it looks like {match[0]}" if match else "it matches no released size"
        raise CheckpointError(
            f"{what} has width {dim} and {depth} encoder blocks, but {config.name} has {config.dim} and "
            f"{config.encoder_depth}: {looks}; create that model instead or pass the right file"
        )


def load_model_weights(
    model: TerraMind, state_dict: Mapping[str, torch.Tensor], what: str, *, ignore_others: bool = False
) -> LoadReport:
    """Load a full encoder-decoder checkpoint strictly (official file or our own saved model).

    Tied tensors (``to_logits`` = ``token_emb``, decoder ``mod_emb`` = encoder ``mod_emb``) may be stored
    under one of their names only, as safetensors' ``save_model`` does.

    Args:
        model: The model to fill.
        state_dict: The checkpoint.
        what: Its name in messages.
        ignore_others: Ignore checkpoint keys the model has no place for (a model built with a subset of the
            embeddings); every key of the model must still be there.

    Raises:
        CheckpointError: On any missing, unused or mismatched key, and for a backbone-only file.
    """
    if not any(k.startswith("decoder") for k in state_dict):
        raise CheckpointError(
            f"{what} holds no decoder weights (a backbone-only checkpoint?): load it with "
            f"create_backbone, or pass the full official TerraMind_v1_*.pt file"
        )
    return load_into(model, _fill_tied(model, state_dict), what=what, allow_unused=ignore_others)


def _fill_tied(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy each stored tensor to the names of the parameters tied to it that the file lacks."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    filled = dict(state_dict)
    for names in groups.values():
        present = [n for n in names if n in filled]
        for name in names:
            if present and name not in filled:
                filled[name] = filled[present[0]]
    return filled


def _backbone_owns(backbone: TerraMindBackbone, key: str) -> bool:
    """Whether a checkpoint key belongs to this backbone (its embeddings, encoder, final norm)."""
    parts = key.split(".")
    if parts[0] == "encoder_embeddings":
        return len(parts) > 1 and parts[1] in backbone.encoder_embeddings
    return parts[0] in ("encoder", "encoder_norm", "missing_mod_token")


def load_backbone_weights(
    backbone: TerraMindBackbone, state_dict: Mapping[str, torch.Tensor], what: str
) -> LoadReport:
    """Load the backbone's part of a full or backbone-only checkpoint.

    Decoder keys, the mask token, other modalities' embeddings and reference tokenizer weights
    (``tokenizer.*``) are ignored by design; new pixel modalities and the concat ``missing_mod_token`` keep
    their fresh initialisation. Every other backbone key must be in the checkpoint.

    Returns:
        The report; ``missing`` lists the freshly initialised keys.

    Raises:
        CheckpointError: On missing or mismatched keys.
    """
    taken = {k: v for k, v in state_dict.items() if _backbone_owns(backbone, k)}
    new = [f"encoder_embeddings.{k}." for k in backbone.new_modalities]
    fresh_prefixes = (*new, "missing_mod_token")
    own = backbone.state_dict()
    fresh = [k for k in own if k not in taken and k.startswith(fresh_prefixes)]
    load_into(backbone, {**taken, **{k: own[k] for k in fresh}}, what=what)
    return LoadReport(tuple(fresh), tuple(k for k in state_dict if k not in taken), ())
