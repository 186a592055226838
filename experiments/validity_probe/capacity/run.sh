#!/usr/bin/env bash
# small experiment (issue 18): is the compact model's overlap on real 7-12-atom cells a capacity
# limit? The demo recipe on the demo's own store, split and seed (work/demo from
# `bash scripts/demo_run.sh`), with a wider and deeper diffusion model (medium.yaml), 10,000 steps;
# regenerated and scored by experiments/sampling_options/demo_sampling_options.sh (CFG T = 1000, all 377 test crystals).
set -euo pipefail
cd "$(dirname "$0")/../../.."
D=.venv/bin/dosmatgen
W=work/capacity
OUT=results/validity_probe/capacity
export OMP_NUM_THREADS=${THREADS:-2}
mkdir -p $W
$D train --kind diffusion --store resources/builtin_dos.npz --split work/demo/data/split.json \
  --standardiser work/demo/data/standardiser.json --config experiments/validity_probe/capacity/medium.yaml --epochs 5000 --batch-size 64 \
  --lr 0.001 --max-steps 10000 --device cpu --seed 0 --out $W/medium --no-progress > $W/train_medium.log 2>&1
CHECKPOINT=$W/medium/best.pt T0S=1000 VARIANTS="steplr0_omegageom0 demo" OUT=$OUT WORK=$W \
  bash experiments/sampling_options/demo_sampling_options.sh
echo done
