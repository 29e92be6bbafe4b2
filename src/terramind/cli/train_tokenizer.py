"""``terramind train-tokenizer -c config.yaml``: train an FSQ-VAE tokenizer (diffusion or ViT decoder)."""

from __future__ import annotations

import argparse

from terramind.cli import _args
from terramind.core.optional import require


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train-tokenizer`` subcommand."""
    p = sub.add_parser(
        "train-tokenizer",
        help="train a modality tokenizer on shards (needs terramind[train])",
        description="Run a tokenizer config (see configs/tokenizer/); writes tokenizer.safetensors and "
        "tokenizer.yaml into trainer.out_dir.",
    )
    p.add_argument("-c", "--config", required=True, type=_args.input_file, help="YAML run config")
    p.add_argument(
        "--resume", default=None, help="checkpoint path, or 'last' (<out_dir>/checkpoints/last.ckpt)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config and train."""
    for module in (
        "terramind.train.tokenizer",
        "terramind.train.config",
    ):  # names a missing extra in one line
        require(module, "train")
    from terramind.train.config import load_yaml
    from terramind.train.tokenizer import TokenizerTrainConfig, train_tokenizer

    config = load_yaml(TokenizerTrainConfig, args.config)
    _args.check_training_run(config.trainer, args.resume)
    train_tokenizer(config, resume=args.resume)
    print(f"{config.trainer.out_dir}/tokenizer.safetensors")
    return 0
