"""``terramind pretrain -c config.yaml``: masked token pretraining (from scratch or continual)."""

from __future__ import annotations

import argparse

from terramind.cli import _args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand."""
    p = sub.add_parser(
        "pretrain",
        help="pretrain TerraMind on shards (masked token prediction; needs terramind[train])",
        description="Run a pretraining config (see configs/pretrain/). Multi-GPU/multi-node: set "
        "trainer.strategy/devices/num_nodes and launch with torchrun or srun.",
    )
    _args.add_training_configs(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config and train (or only print it: ``--print-config``)."""
    config = _args.load_training_configs(args, "terramind.train.pretrain", "PretrainConfig")
    if _args.print_config(args, config):
        return 0
    from terramind.train.pretrain import pretrain

    pretrain(config, resume=args.resume)
    return 0
