"""Official <-> internal weights: reading files, the hub, strict loading with a report."""

from terramind.checkpoints.io import HubFile, LoadReport, compare, fetch, load_into, read_state_dict

__all__ = ["HubFile", "LoadReport", "compare", "fetch", "load_into", "read_state_dict"]
