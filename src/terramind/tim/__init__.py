"""terramind.tim."""
