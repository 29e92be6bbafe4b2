"""terramind.tokenizers."""
