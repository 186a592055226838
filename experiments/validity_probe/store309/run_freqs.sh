#!/usr/bin/env bash
# the compact model with 32 Fourier frequencies instead of 10 (demo recipe otherwise)
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
D=.venv/bin/dosmatgen
W=work/recipe10k
export OMP_NUM_THREADS=2
$D train --kind diffusion --store $W/store.npz --split $W/split.json --standardiser $W/std.json --config experiments/validity_probe/store309/freqs32.yaml --batch-size 64 --lr 1e-3 --epochs 5000 --max-steps 10000 --device cpu --seed 0 --no-progress --out $W/freqs32 > $W/train_freqs32.log 2>&1
for seed in 0 1 2; do
  [ -e $W/probe_f32_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/freqs32/best.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --variant 1,0 --step-lr 0 --seed $seed --out $W/probe_f32_s$seed.json > $W/probe_f32_s$seed.log 2>&1
done
echo done
