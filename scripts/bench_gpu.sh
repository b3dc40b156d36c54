#!/usr/bin/env bash
# GPU throughput of conductance (GoogLeNet mixed4d 224 px, Inception-v3 mixed6e 299 px; float32, TF32, bf16;
# neuronimp against Captum LayerConductance), under 4 minutes in all. Run from anywhere on a CUDA machine:
#   scripts/bench_gpu.sh [--images 64] [--steps 50] [...]       (PYTHON=/path/to/python to choose the interpreter)
# CPU path test (tiny sizes, meaningless numbers):  scripts/bench_gpu.sh --device cpu --smoke --max-rows 4 --threads 1
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 235 "$PY" scripts/bench_gpu.py --device cuda "$@"
