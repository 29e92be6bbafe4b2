"""Any-to-any generation: sampling, schedules, decoding strategies, the generator, its scene tile function.

The generator itself lives in :mod:`terramind.generation.generate`, its tile function for the whole-scene
engine (:mod:`terramind.scene`) in :mod:`terramind.generation.scene`; this package root exports the
model-free building blocks, among them :class:`GenerationOptions`, the one record of decoding options.
"""

from terramind.generation.options import GenerationOptions
from terramind.generation.schedule import TemperatureSchedule, temperature_schedule, token_schedule
from terramind.generation.strategies import STRATEGIES, Strategy, decode_grid, decode_sequence, get_strategy
from terramind.layers.sampling import SamplingConfig, derive_seed, filter_logits, generators, sample

__all__ = [
    "STRATEGIES",
    "GenerationOptions",
    "SamplingConfig",
    "Strategy",
    "TemperatureSchedule",
    "decode_grid",
    "decode_sequence",
    "derive_seed",
    "filter_logits",
    "generators",
    "get_strategy",
    "sample",
    "temperature_schedule",
    "token_schedule",
]
