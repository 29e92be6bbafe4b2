"""terramind.model."""
