"""terramind.data."""
