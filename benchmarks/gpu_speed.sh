#!/usr/bin/env bash
# Issue 16, GPU half: fp32 vs bf16, eager vs compiled (CUDA graphs), generation at batch 8 (S2L2A -> S1RTC,
# -> LULC, -> five outputs), the backbone, the host syncs of the diffusion decode loop and a profile of it.
#
#   OUT=/some/folder bash benchmarks/gpu_speed.sh            # on the GPU host, from the repository root
#   OUT=/tmp/x bash benchmarks/gpu_speed.sh --device cpu --size tiny --tile 64 --batch 1 --backbone-batch 1 \
#       --repeats 1 --diffusion-steps 2 --scenarios S1RTC --backbones tiny --no-compile   # CPU smoke test
#
# Writes $OUT/gpu_speed.json (rewritten after every case, so a cut-short run keeps what it measured) and
# $OUT/gpu_speed.log. Budget: new cases start only in the first BUDGET_S seconds (default 200) and the whole
# run is killed at LIMIT_S (default 285), so it fits 5 minutes of wall time on an H200.
# Needs torch, einops, safetensors, numpy, tqdm (no diffusers, rasterio or Hugging Face tokenizers). Wheels
# installed with `pip install --target /tmp/site` are picked up from there.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives gpu_speed.json}"
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d /tmp/site ] && export PYTHONPATH="$PYTHONPATH:/tmp/site"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

DEVICE=cuda
for ((i = 1; i <= $#; i++)); do
    if [ "${!i}" = "--device" ]; then j=$((i + 1)); DEVICE=${!j}; fi
done

# Fail fast, with the missing module named, before any minute is spent.
extra=$("$PY" - "$DEVICE" <<'EOF'
import importlib, sys
device = sys.argv[1]
missing = []
for name in ("torch", "einops", "safetensors", "numpy", "tqdm"):
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"gpu_speed.sh: missing Python package(s) {', '.join(missing)}: carry their wheels and "
             "pip install --no-index --no-deps --target /tmp/site .whl/*.whl")
try:
    import terramind.api.generation, terramind.api.models, terramind.layers.compile  # noqa: F401
except ImportError as err:
    sys.exit(f"gpu_speed.sh: importing terramind needs {err.name!r}: carry its wheel (see the line above)")
import torch
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_speed.sh: no CUDA device visible to torch " + torch.__version__ + "; pass --device cpu to test")
try:
    import triton  # noqa: F401  (inductor's GPU code generator; the CPU path needs a C++ compiler instead)
except ImportError:
    if device == "cuda":
        print("--no-compile")
        print("gpu_speed.sh: triton missing: compiled cases skipped", file=sys.stderr)
print(f"gpu_speed.sh: torch {torch.__version__}, device {device}", file=sys.stderr)
EOF
)

timeout "${LIMIT_S:-285}" "$PY" benchmarks/bench_gpu.py --budget-s "${BUDGET_S:-200}" \
    --out "$OUT/gpu_speed.json" $extra "$@" 2>&1 | tee "$OUT/gpu_speed.log"
