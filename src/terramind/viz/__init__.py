"""Quicklooks: per-modality RGB pictures of tiles and PNG figures of one or several modalities."""

from terramind.viz.figure import save_figure, save_quicklook
from terramind.viz.quicklook import quicklook, stretch

__all__ = ["quicklook", "save_figure", "save_quicklook", "stretch"]
