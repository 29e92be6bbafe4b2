"""terramind.generation."""
