#!/usr/bin/env bash
# One GPU call (2026-11-27, one H200): the main CamVid recipe (the shipped model) and the four
# dilation ablations, trained side by side on ONE GPU for fixed wall-clock budgets
# (benchmarks/camvid_train_budget.py), each evaluated on val at the end.
#
#   OUT=/tmp/out bash benchmarks/camvid_gpu_run.sh
#
# Environment: ROOT (CamVid folder; default the JPEG-q95 copy in .devcarry/camvid, whose
# train_x8.txt lists the training set 8 times so that an "epoch" is long enough to
# amortise the data-loader start), MAIN_BUDGET / ABLATION_BUDGET (training seconds),
# EXTRA (more arguments for every run, e.g. for a smoke test on CPU).
# Results: $OUT/bundle.tar.part_* (split tar of runs/*/summary.json, logs and the main
# model's save_pretrained folder with fp16 weights) and $OUT/summary.txt.
set -u
OUT=${OUT:?set OUT}
ROOT=${ROOT:-.devcarry/camvid}
RUNS=${RUNS:-/tmp/camvid_runs}
MAIN_BUDGET=${MAIN_BUDGET:-420}
ABLATION_BUDGET=${ABLATION_BUDGET:-300}
EXTRA=${EXTRA:-}
# Median frequency weights of the CamVid train masks (atrous.data.median_frequency_weights),
# computed once instead of re-reading the 8x list in every process.
WEIGHTS="[0.2793, 0.2017, 4.7865, 0.149, 1.0, 0.4217, 3.8467, 1.9736, 0.7889, 6.3747, 8.8587]"
export PYTHONPATH=.
mkdir -p "$RUNS" "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c "import atrous, torch; print('atrous ok; torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 3

run() {  # run NAME CONFIG BUDGET WORKERS [--half]
  local name=$1 config=$2 budget=$3 workers=$4
  shift 4
  # shellcheck disable=SC2086
  timeout -k 15 $((budget + 90)) python3 benchmarks/camvid_train_budget.py \
    --config "$config" --out "$RUNS/$name" --name "$name" --budget "$budget" --threads 1 \
    --set data.root="$ROOT" --set data.train_split=train_x8 --set data.num_workers="$workers" \
    --set eval.every=100000 --set schedule.epochs=1000 --set "loss.class_weights=$WEIGHTS" \
    "$@" $EXTRA >"$RUNS/$name.log" 2>&1
  echo "[$name] exit $?" >>"$RUNS/$name.log"
}

run main configs/camvid_gpu.yaml "$MAIN_BUDGET" 4 --half &
for variant in plain multigrid hdc none; do
  run "$variant" "configs/camvid_ablation_$variant.yaml" "$ABLATION_BUDGET" 3 --half &
done
wait

for name in main plain multigrid hdc none; do
  echo "===== $name"
  grep -v -e "^\s*$" -e UserWarning -e check_worker "$RUNS/$name.log" | tail -n 14
done
python3 - "$RUNS" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
for name in ("main", "plain", "multigrid", "hdc", "none"):
    path = runs / name / "summary.json"
    if not path.exists():
        print(f"{name:10s} NO SUMMARY"); continue
    s = json.loads(path.read_text())
    m = s["eval"]["metrics"]
    ious = " ".join(f"{100 * (r['iou'] or 0):.1f}" for r in s["eval"]["per_class"])
    print(f"{name:10s} mIoU {100*m['miou']:.2f} bF {100*m['boundary_f1']:.2f} "
          f"pixacc {100*m['pixel_acc']:.2f} iters {s['iterations']} "
          f"{s['images_per_s']:.0f} img/s {s['epochs_equivalent']:.1f} ep {s['train_seconds']:.0f}s | {ious}")
PY
cd "$RUNS" && tar -cf bundle.tar ./*.log ./*/summary.json ./*/metrics.jsonl ./*/config.yaml main/final \
  && split -b 15M bundle.tar "$OUT/bundle.tar.part_" && ls -la "$OUT"
