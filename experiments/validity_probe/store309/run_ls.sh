#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
D=.venv/bin/dosmatgen
W=work/recipe10k
export OMP_NUM_THREADS=2
COMMON=(--kind diffusion --store $W/store.npz --split $W/split.json --standardiser $W/std.json --size compact --type-target posterior --batch-size 64 --lr 1e-3 --epochs 5000 --max-steps 10000 --device cpu --seed 0 --no-progress)
$D train "${COMMON[@]}" --lattice-scale atoms --out $W/latscale > $W/train_latscale.log 2>&1
for seed in 0 1 2; do
  [ -e $W/probe_ls_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/latscale/best.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --variant 1,0 --step-lr 0 --seed $seed --out $W/probe_ls_s$seed.json > $W/probe_ls_s$seed.log 2>&1
  [ -e $W/probe_ls_lr_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/latscale/best.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --step-lr 1e-5 --seed $seed --out $W/probe_ls_lr_s$seed.json > $W/probe_ls_lr_s$seed.log 2>&1
done
echo done
