"""terramind.finetune."""
