"""Any-to-any generation: sampling, schedules, decoding strategies, the generator and whole-scene tiling.

The generator itself lives in :mod:`terramind.generation.generate` and the raster streaming in
:mod:`terramind.generation.scene`; this package root exports the model-free building blocks, among them
:class:`GenerationOptions`, the one record of decoding options.
"""

from terramind.generation.options import GenerationOptions
from terramind.generation.schedule import TemperatureSchedule, temperature_schedule, token_schedule
from terramind.generation.strategies import STRATEGIES, Strategy, decode_grid, decode_sequence, get_strategy
from terramind.generation.tiling import TileLayout, blend_window, run_tiles
from terramind.layers.sampling import SamplingConfig, derive_seed, filter_logits, generators, sample

__all__ = [
    "STRATEGIES",
    "GenerationOptions",
    "SamplingConfig",
    "Strategy",
    "TemperatureSchedule",
    "TileLayout",
    "blend_window",
    "decode_grid",
    "decode_sequence",
    "derive_seed",
    "filter_logits",
    "generators",
    "get_strategy",
    "run_tiles",
    "sample",
    "temperature_schedule",
    "token_schedule",
]
