"""terramind.train."""
