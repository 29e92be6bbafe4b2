"""Which parameters weight decay applies to: chosen by the type of the module that owns them.

One policy for pretraining, tokenizer training and fine-tuning. No decay for

- every parameter of a normalisation layer (``NORM_TYPES``: scales and shifts set the scale of features,
  shrinking them towards zero is not regularisation),
- every bias,
- every embedding table (``nn.Embedding``; a tied output projection shares the table and follows it),
- the parameters a module names in a ``no_weight_decay()`` method (timm's convention, here the names of the
  module's *own* parameters): learned tables held as bare ``nn.Parameter``, such as modality embeddings,
  mask tokens and positional tables.

Everything else decays: the weights of every ``nn.Linear`` and convolution, including patch embeddings and
the time-embedding MLP of the diffusion decoder. This is the convention of MAE, 4M and timm, written by
module type instead of name substrings (which used to exempt any weight whose name contained ``emb``).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from terramind.layers.norm import LayerNorm

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,  # also the diffusion UNet's GroupNorm32
    nn.RMSNorm,
    nn.modules.batchnorm._BatchNorm,  # BatchNorm1d/2d/3d, SyncBatchNorm
    nn.modules.instancenorm._InstanceNorm,
    LayerNorm,
)
"""Module types whose parameters never decay."""


def _exempt_names(module: nn.Module) -> set[str]:
    """Names of ``module``'s own parameters that do not decay."""
    own = {name for name, _ in module.named_parameters(recurse=False)}
    if isinstance(module, (*NORM_TYPES, nn.Embedding)):
        return own
    declared = getattr(module, "no_weight_decay", None)
    named = set(declared()) if callable(declared) else set()
    unknown = named - own
    if unknown:
        raise ValueError(
            f"{type(module).__name__}.no_weight_decay() names no parameter of it: {sorted(unknown)}"
        )
    return named | ({"bias"} & own)


def _exempt_ids(model: nn.Module) -> set[int]:
    """Identities of the parameters any owning module exempts (a shared parameter once is enough)."""
    return {
        id(param)
        for module in model.modules()
        for name, param in module.named_parameters(recurse=False)
        if name in _exempt_names(module)
    }


def _trainable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Trainable parameters by qualified name, shared ones once (under their first name)."""
    return ((name, p) for name, p in model.named_parameters() if p.requires_grad)


def no_decay_names(model: nn.Module) -> list[str]:
    """Qualified names of the trainable parameters that get no weight decay, in ``named_parameters`` order."""
    exempt = _exempt_ids(model)
    return [name for name, p in _trainable(model) if id(p) in exempt]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two AdamW parameter groups of the trainable parameters: decayed and not (see the module docstring).

    Args:
        model: The model; frozen parameters (``requires_grad=False``) are left out.
        weight_decay: Decay of the first group.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]``;
        a shared parameter appears once.
    """
    exempt = _exempt_ids(model)
    params = [p for _, p in _trainable(model)]
    return [
        {"params": [p for p in params if id(p) not in exempt], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0},
    ]
