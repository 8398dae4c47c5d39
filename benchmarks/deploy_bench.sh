#!/usr/bin/env bash
# atrous's fast path and int8 against ONNX Runtime and OpenVINO (fp32, NNCF int8), same
# weights, one process per model, pinned to one core; ratios to the eager reference.
# Usage: bash benchmarks/deploy_bench.sh [CPU] [CAMVID_ROOT]   (results: benchmarks/results/deploy.md)
set -euo pipefail
CPU=${1:-0}
CAMVID=${2:-../shared/datasets/camvid}
BIN=${BIN:-.venv/bin}
date -u; uptime; lscpu | grep "Model name"; git rev-parse --short HEAD
common=(--batch 1 --no-memory --threads 1 --deploy
        --images "$CAMVID/val" --calibration-images "$CAMVID/train")
# DeepLabV3-ResNet50 OS8 (torchvision's weights layout, random init, BN re-estimated) at 512x512.
taskset -c "$CPU" "$BIN/atrous" bench --variants fp32 --size 512 --runs 3 \
    --held-out 4 --calibration 4 "${common[@]}"
# The shipped models at CamVid's 360x480, against their own PyTorch eager forward.
for model in camvid ${EXTRA_MODELS:-}; do
    taskset -c "$CPU" "$BIN/atrous" bench --model "$model" --variants fp32-eager,fp32 \
        --size 360x480 --runs 5 --held-out 8 --calibration 8 "${common[@]}"
done
uptime
