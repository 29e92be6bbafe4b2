"""Generic transformer parts: attention, MLPs, norms, blocks, sin-cos positions."""

from terramind.layers.attention import Attention
from terramind.layers.block import Block, DecoderBlock
from terramind.layers.mlp import Mlp
from terramind.layers.norm import LayerNorm
from terramind.layers.posemb import resize_grid, sincos_1d, sincos_2d

__all__ = ["Attention", "Block", "DecoderBlock", "LayerNorm", "Mlp", "resize_grid", "sincos_1d", "sincos_2d"]
