#!/usr/bin/env bash
# small experiment (issue 18): the weighted recipe of experiments/real_mixed_demo/real_mixed_demo.sh (RECIPE=weighted:
# 30,000 steps, EMA 0.999, patience 100, real crystals drawn 4x, final weights) on the demo run's
# own store, split and standardiser (work/demo from `bash scripts/demo_run.sh`, commit 8e45d61),
# sampled with --step-lr 0 --omega-geometry 0 and scored like results/demo_sampling_options/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
D=.venv/bin/dosmatgen
W=work/weighted_merged
OUT=results/validity_probe/weighted_merged
export OMP_NUM_THREADS=${THREADS:-2}
mkdir -p $W/metrics
$D train --kind diffusion --store resources/builtin_dos.npz --split work/demo/data/split.json \
  --standardiser work/demo/data/standardiser.json --size compact --type-target posterior --batch-size 64 \
  --lr 1e-3 --epochs 50000 --max-steps 30000 --ema-decay 0.999 --patience 100 --repeat-source mp20=4 \
  --device cpu --seed 0 --out $W/model --no-progress > $W/train.log 2>&1
[ -e $W/cfg_T1000.npz ] || $D evaluate regenerate --checkpoint $W/model/final.pt --store resources/builtin_dos.npz \
  --split work/demo/data/split.json --subset test --guidance cfg --omega 1.0 --omega-geometry 0 --t0 1000 --steps 200 \
  --batch-size 128 --step-lr 0 --predictor-input corrected --device cpu --seed 0 --out $W/cfg_T1000.npz --no-progress
[ -e $W/metrics/cfg_T1000.json ] || $D evaluate score --generated $W/cfg_T1000.npz \
  --surrogate work/demo/models/surrogate/best.pt --store resources/builtin_dos.npz --split work/demo/data/split.json \
  --match-timeout 10 --workers $OMP_NUM_THREADS --device cpu --out $W/metrics/cfg_T1000.json --no-progress
$D evaluate tables --metrics-dir $W/metrics --out $OUT
echo done
