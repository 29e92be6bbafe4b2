"""terramind.layers."""
