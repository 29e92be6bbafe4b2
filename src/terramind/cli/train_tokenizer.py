"""``terramind train-tokenizer -c config.yaml``: train an FSQ-VAE tokenizer (diffusion or ViT decoder)."""

from __future__ import annotations

import argparse

from terramind.cli import _args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train-tokenizer`` subcommand."""
    p = sub.add_parser(
        "train-tokenizer",
        help="train a modality tokenizer on shards (needs terramind[train])",
        description="Run a tokenizer config (see configs/tokenizer/); writes tokenizer.safetensors and "
        "tokenizer.yaml into trainer.out_dir.",
    )
    _args.add_training_configs(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config and train (or only print it: ``--print-config``)."""
    config = _args.load_training_configs(args, "terramind.train.tokenizer", "TokenizerTrainConfig")
    if _args.print_config(args, config):
        return 0
    from terramind.train.tokenizer import train_tokenizer

    train_tokenizer(config, resume=args.resume)
    print(f"{config.trainer.out_dir}/tokenizer.safetensors")
    return 0
