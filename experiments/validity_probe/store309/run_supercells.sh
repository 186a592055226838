#!/usr/bin/env bash
# small experiment (issue 18): the demo recipe + `--supercells 12` (each training crystal of <= 6
# atoms also drawn as a doubled cell, its site DOS copied) beside the demo recipe of run.sh:
# same store (work/recipe10k/store.npz = store309), split, seed, 10,000 steps, same probes.
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
D=.venv/bin/dosmatgen
W=work/recipe10k
export OMP_NUM_THREADS=${THREADS:-2}
COMMON=(--kind diffusion --store $W/store.npz --split $W/split.json --standardiser $W/std.json --size compact --type-target posterior --batch-size 64 --lr 1e-3 --epochs 5000 --max-steps 10000 --device cpu --seed 0 --no-progress)
$D train "${COMMON[@]}" --supercells 12 --out $W/super12 > $W/train_super12.log 2>&1
for seed in 0 1 2; do
  [ -e $W/probe_s12_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/super12/best.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --variant 1,0 --step-lr 0 --seed $seed --out $W/probe_s12_s$seed.json > $W/probe_s12_s$seed.log 2>&1
  [ -e $W/probe_s12_lr_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/super12/best.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --step-lr 1e-5 --seed $seed --out $W/probe_s12_lr_s$seed.json > $W/probe_s12_lr_s$seed.log 2>&1
done
echo done
