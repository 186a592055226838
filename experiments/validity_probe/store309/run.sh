#!/usr/bin/env bash
# small experiment (issue 18): is 10,000 steps enough for the weighted recipe? demo recipe vs
# demo budget + EMA 0.999 + patience 100 + --repeat-source mp20=4 (final weights), same store/split/seed
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
D=.venv/bin/dosmatgen
W=work/recipe10k
export OMP_NUM_THREADS=2
[ -e $W/store.npz ] || $D data merge --source builtin --shards resources/builtin --out $W/store.npz
$D data info --store $W/store.npz > $W/data_info.txt
[ -e $W/split.json ] || $D data split --store $W/store.npz --out $W/split.json --standardiser $W/std.json --seed 0 --fractions 0.6 0.2 0.2
COMMON=(--kind diffusion --store $W/store.npz --split $W/split.json --standardiser $W/std.json --size compact --type-target posterior --batch-size 64 --lr 1e-3 --epochs 5000 --max-steps 10000 --device cpu --seed 0 --no-progress)
$D train "${COMMON[@]}" --out $W/demo > $W/train_demo.log 2>&1
$D train "${COMMON[@]}" --ema-decay 0.999 --patience 100 --repeat-source mp20=4 --out $W/weighted10k > $W/train_weighted10k.log 2>&1
for seed in 0 1 2; do
  [ -e $W/probe_demo_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/demo/best.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --variant 1,0 --step-lr 0 --seed $seed --out $W/probe_demo_s$seed.json > $W/probe_demo_s$seed.log 2>&1
  [ -e $W/probe_demo_lr_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/demo/best.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --step-lr 1e-5 --seed $seed --out $W/probe_demo_lr_s$seed.json > $W/probe_demo_lr_s$seed.log 2>&1
  [ -e $W/probe_w10k_s$seed.json ] || .venv/bin/python experiments/validity_probe/validity_probe.py --checkpoint $W/weighted10k/final.pt --store $W/store.npz --split $W/split.json --subset val test --source mp20 --variant 1,1 --variant 1,0 --step-lr 0 --seed $seed --out $W/probe_w10k_s$seed.json > $W/probe_w10k_s$seed.log 2>&1
done
echo done
