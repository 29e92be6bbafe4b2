#!/usr/bin/env bash
# The CPU proof that tokenizer training and pretraining learn (issue 7), on the five example tiles:
# small S2L2A/S1RTC/DEM/LULC tokenizers trained on four tiles and judged on the fifth against an equal-bits
# downsampling baseline, then a small TerraMind pretrained on their tokens and judged on the fifth tile
# against the unigram baseline. About 15 minutes on 1-2 CPU cores; numbers go to runs/proof/proof.md.
# Usage: scripts/proof_pretrain.sh [--quick] [--threads N] [--out DIR]
#        scripts/proof_pretrain.sh --src /data/TerraMesh --terramesh-subset majortom   (a TerraMesh-layout root:
#        train/{S2L2A,S1RTC,DEM,LULC}/majortom_shard_*.tar; the last sample is held out)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m terramind.train.proof --src examples --out runs/proof "$@"
