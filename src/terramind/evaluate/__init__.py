"""terramind.evaluate."""
