"""Thinking-in-Modalities: a frozen generator that adds generated token modalities to the inputs."""

from terramind.tim.tim import TiMGenerator

__all__ = ["TiMGenerator"]
