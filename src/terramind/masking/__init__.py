"""terramind.masking."""
