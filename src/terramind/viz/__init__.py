"""terramind.viz."""
