"""``terramind pretrain -c config.yaml``: masked token pretraining (from scratch or continual)."""

from __future__ import annotations

import argparse

from terramind.cli import _args
from terramind.core.optional import require


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand."""
    p = sub.add_parser(
        "pretrain",
        help="pretrain TerraMind on shards (masked token prediction; needs terramind[train])",
        description="Run a pretraining config (see configs/pretrain/). Multi-GPU/multi-node: set "
        "trainer.strategy/devices/num_nodes and launch with torchrun or srun.",
    )
    p.add_argument("-c", "--config", required=True, type=_args.input_file, help="YAML run config")
    p.add_argument(
        "--resume", default=None, help="checkpoint path, or 'last' (<out_dir>/checkpoints/last.ckpt)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config and train."""
    for module in (
        "terramind.train.pretrain",
        "terramind.train.config",
    ):  # names a missing extra in one line
        require(module, "train")
    from terramind.train.config import PretrainConfig, load_yaml
    from terramind.train.pretrain import pretrain

    config = load_yaml(PretrainConfig, args.config)
    _args.check_training_run(config.trainer, args.resume)
    pretrain(config, resume=args.resume)
    return 0
