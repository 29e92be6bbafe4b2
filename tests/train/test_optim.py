"""The weight-decay policy (terramind.layers.decay) as the training loops use it."""

import pytest
import torch
from torch import nn

from terramind.layers.decay import no_decay_names, param_groups
from terramind.model import TINY, TerraMind, TerraMindBackbone
from terramind.tokenizers import LEVELS_15360, TokenizerConfig, UNetConfig, ViTConfig, build_tokenizer
from terramind.train.optim import build_optimizer

# Undecayed parameters of TerraMind(TINY), block indices written as "*": norms, biases, embedding tables
# (the tied to_logits share them), modality embeddings and the mask token. Patch-embedding projections
# (untok_*.proj.weight) are absent: they are Linear weights and decay.
TINY_NO_DECAY = [
    "decoder.*.context_norm.weight",
    "decoder.*.cross_attn.kv.bias",
    "decoder.*.cross_attn.proj.bias",
    "decoder.*.cross_attn.q.bias",
    "decoder.*.mlp.fc1.bias",
    "decoder.*.mlp.fc2.bias",
    "decoder.*.norm1.weight",
    "decoder.*.norm2.weight",
    "decoder.*.query_norm.weight",
    "decoder.*.self_attn.proj.bias",
    "decoder.*.self_attn.qkv.bias",
    "decoder_embeddings.coords.token_emb.weight",
    "decoder_embeddings.tok_dem@224.token_emb.weight",
    "decoder_embeddings.tok_lulc@224.token_emb.weight",
    "decoder_embeddings.tok_ndvi@224.token_emb.weight",
    "decoder_embeddings.tok_sen1grd@224.token_emb.weight",
    "decoder_embeddings.tok_sen1rtc@224.token_emb.weight",
    "decoder_embeddings.tok_sen2l2a@224.token_emb.weight",
    "decoder_norm.weight",
    "decoder_proj_context.bias",
    "encoder.*.attn.proj.bias",
    "encoder.*.attn.qkv.bias",
    "encoder.*.mlp.fc1.bias",
    "encoder.*.mlp.fc2.bias",
    "encoder.*.norm1.weight",
    "encoder.*.norm2.weight",
    "encoder_embeddings.coords.mod_emb",
    "encoder_embeddings.coords.token_emb.weight",
    "encoder_embeddings.tok_dem@224.mod_emb",
    "encoder_embeddings.tok_dem@224.token_emb.weight",
    "encoder_embeddings.tok_lulc@224.mod_emb",
    "encoder_embeddings.tok_lulc@224.token_emb.weight",
    "encoder_embeddings.tok_ndvi@224.mod_emb",
    "encoder_embeddings.tok_ndvi@224.token_emb.weight",
    "encoder_embeddings.tok_sen1grd@224.mod_emb",
    "encoder_embeddings.tok_sen1grd@224.token_emb.weight",
    "encoder_embeddings.tok_sen1rtc@224.mod_emb",
    "encoder_embeddings.tok_sen1rtc@224.token_emb.weight",
    "encoder_embeddings.tok_sen2l2a@224.mod_emb",
    "encoder_embeddings.tok_sen2l2a@224.token_emb.weight",
    "encoder_embeddings.untok_dem@224.mod_emb",
    "encoder_embeddings.untok_sen1grd@224.mod_emb",
    "encoder_embeddings.untok_sen1rtc@224.mod_emb",
    "encoder_embeddings.untok_sen2l1c@224.mod_emb",
    "encoder_embeddings.untok_sen2l2a@224.mod_emb",
    "encoder_embeddings.untok_sen2rgb@224.mod_emb",
    "encoder_norm.weight",
    "mask_token",
]


@pytest.fixture(scope="module")
def tiny() -> TerraMind:
    return TerraMind(TINY)


def _decayed(model: nn.Module, weight_decay: float = 0.05) -> dict[int, float]:
    """Weight decay of each parameter (by identity) in the AdamW groups."""
    return {id(p): g["weight_decay"] for g in param_groups(model, weight_decay) for p in g["params"]}


def _expand(pattern: str) -> list[str]:
    """The names a pattern stands for: ``*`` is every block index of its stack."""
    depth = TINY.encoder_depth if pattern.startswith("encoder.") else TINY.decoder_depth
    return [pattern.replace("*", str(i)) for i in range(depth)] if "*" in pattern else [pattern]


def test_tiny_model_undecayed_parameters(tiny: TerraMind) -> None:
    names = no_decay_names(tiny)
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(name for pattern in TINY_NO_DECAY for name in _expand(pattern))


def test_patch_embedding_and_heads_decay(tiny: TerraMind) -> None:
    decay = _decayed(tiny)
    params = dict(tiny.named_parameters())
    assert decay[id(params["encoder_embeddings.untok_sen2l2a@224.proj.weight"])] == 0.05
    assert decay[id(params["encoder.0.attn.qkv.weight"])] == 0.05
    # the tied output projection is the embedding table: one parameter, not decayed
    tied = tiny.decoder_embeddings["tok_sen2l2a@224"]
    assert tied.to_logits.weight is tied.token_emb.weight
    assert decay[id(tied.to_logits.weight)] == 0.0


def test_groups_cover_each_trainable_parameter_once(tiny: TerraMind) -> None:
    groups = param_groups(tiny, 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(tiny.parameters()))
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]


def test_tokenizer_unet_time_embedding_decays() -> None:
    vit = ViTConfig(dim=32, depth=1, heads=2, grid=4)
    unet = UNetConfig(model_channels=32, channel_mult=(1, 1), num_res_blocks=1, attention_ds=(2,))
    tok = build_tokenizer(TokenizerConfig("S1GRD", 2, LEVELS_15360, vit, unet))
    by_id = _decayed(tok)
    decay = {name: by_id[id(p)] for name, p in tok.named_parameters() if id(p) in by_id}
    assert decay["decoder.time_embed.0.weight"] == decay["decoder.time_embed.2.weight"] == 0.05
    assert decay["decoder.time_embed.0.bias"] == 0.0
    assert decay["decoder.out.0.weight"] == 0.0  # GroupNorm32 scale
    assert decay["encoder.norm_mlp.weight"] == 0.0
    assert "encoder.pos_emb" not in decay  # frozen sin-cos table: in no group at all


def test_backbone_concat_missing_token_does_not_decay() -> None:
    backbone = TerraMindBackbone(TINY, ["S2L2A", "S1GRD"], merge="concat")
    assert "missing_mod_token" in no_decay_names(backbone)
    backbone.merge = "mean"  # the token stays a parameter, so it stays exempt
    assert "missing_mod_token" in no_decay_names(backbone)
    assert "missing_mod_token" not in no_decay_names(TerraMindBackbone(TINY, ["S2L2A"], merge="mean"))


def test_frozen_parameters_are_left_out() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    model[0].requires_grad_(False)
    groups = param_groups(model, 0.05)
    assert [len(g["params"]) for g in groups] == [0, 2]


def test_no_weight_decay_must_name_own_parameters() -> None:
    class Typo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.zeros(2, 3))

        def no_weight_decay(self) -> tuple[str, ...]:
            return ("tabel",)

    with pytest.raises(ValueError, match="tabel"):
        param_groups(Typo(), 0.05)


def test_build_optimizer_uses_the_policy() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(2, 4), nn.Embedding(5, 4))
    optimizer, _ = build_optimizer(
        model, lr=1e-3, weight_decay=0.2, betas=(0.9, 0.95), warmup_steps=1, total_steps=2
    )
    decayed = [p for g in optimizer.param_groups if g["weight_decay"] == 0.2 for p in g["params"]]
    assert decayed == [model[0].weight]
