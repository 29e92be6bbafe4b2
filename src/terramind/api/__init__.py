"""The handful of public verbs (create a backbone, model, tokenizer, generator)."""
