#!/usr/bin/env bash
# Check that a base install (`pip install -e .`, no extras) runs every command it should:
# `terramind --help` and every subcommand's --help exit 0; embed, tokenize, reconstruct and zeroshot water run
# on an example tile with random weights; a command that needs the train extra stops with exit 2 and one line
# naming it. Usage: scripts/check_base_install.sh [VENV] (default .venv-base, made by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-base}
TM="$VENV/bin/terramind"
TILE=examples/S2L2A/38D_378R_2_3.tif
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export HF_HUB_OFFLINE=1  # random weights: nothing is downloaded
fail() { echo "check_base_install: FAIL: $*" >&2; exit 1; }

if "$VENV/bin/python" -c "import lightning" 2>/dev/null; then
    fail "$VENV has lightning installed: this check needs a base install without extras"
fi

# the console script itself, then every subcommand's --help (discovered by the CLI's own walk of its
# subparsers) in one process: a process per command would spend minutes importing torch
"$TM" --help > /dev/null || fail "terramind --help"
"$VENV/bin/python" - <<'PY' || fail "a subcommand's --help"
import contextlib, io, sys
from terramind.cli.main import build_parser, leaf_parsers, main
names = [*leaf_parsers(build_parser()), "finetune scene"]
for name in names:
    with contextlib.redirect_stdout(io.StringIO()):
        code = main([*name.split(), "--help"])
    if code != 0:
        sys.exit(f"terramind {name} --help exited {code}")
print(f"ok: --help of {len(names)} commands")
PY

RANDOM_TINY=(--weights random --tokenizer-weights random --device cpu)
"$TM" tokenize "$TILE" -m S2L2A -o "$OUT/tokens.npz" "${RANDOM_TINY[@]}" || fail "tokenize"
"$TM" reconstruct "$TILE" -m S2L2A -o "$OUT/rec.tif" --diffusion-steps 1 "${RANDOM_TINY[@]}" || fail "reconstruct"
"$TM" embed --input "S2L2A=$TILE" -o "$OUT/emb.npy" --model terramind_v1_tiny --weights random --device cpu \
    || fail "embed"
# a water label (1 water, 0 not) made from the example LULC tile: class 1 is water
"$VENV/bin/python" - "$OUT/label.tif" <<'PY' || fail "writing the water label"
import sys
import rasterio
with rasterio.open("examples/LULC/38D_378R_2_3.tif") as src:
    profile, lulc = src.profile, src.read(1)
profile.update(count=1, dtype="uint8", nodata=255)
with rasterio.open(sys.argv[1], "w", **profile) as dst:
    dst.write((lulc == 1).astype("uint8"), 1)
PY
"$TM" zeroshot water --input "S2L2A=$TILE" -o "$OUT/water.tif" --model terramind_v1_tiny "${RANDOM_TINY[@]}" \
    --label "$OUT/label.tif" || fail "zeroshot water"
echo "ok: tokenize, reconstruct, embed, zeroshot water"

set +e
err=$("$TM" pretrain -c configs/pretrain/tiny_cpu.yaml 2>&1 >/dev/null)
code=$?
set -e
[ "$code" -eq 2 ] || fail "pretrain without the train extra exited $code, expected 2: $err"
grep -q "pip install 'terramind\[train\]'" <<< "$err" || fail "pretrain did not name the extra: $err"
[ "$(wc -l <<< "$err")" -eq 1 ] || fail "pretrain printed more than one line: $err"
echo "ok: pretrain names the train extra"
