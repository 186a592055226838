#!/usr/bin/env bash
# Table 2's protocol for the tie tolerance (issue 35): the demo run's model regenerates the whole
# test split (406 crystals, sources mixed in batches of 128, as the workflow's regenerate rule does)
# with the demo's sampling options and --tie-equal-sites TIE, sampling seed SEED, one thread; scored
# with the demo run's surrogate. Results: results/real_crystal_training/demo375/full_split/.
#
#   bash experiments/real_crystal_training/tie_full_split.sh TIE SEED      # e.g. 0.1 1
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-results/demo_run}
WORK=${WORK:-work/real_crystal_training/demo375}
OUT=${OUT:-results/real_crystal_training/demo375/full_split}
tie=$1 seed=$2
name="tie${tie}_seed$seed"
mkdir -p "$OUT" "$WORK/samples"
gen="$WORK/samples/full_$name.npz"
[ -f "$gen" ] || OMP_NUM_THREADS=1 "$PY" -m dosmatgen.cli evaluate regenerate --checkpoint "$RUN/diffusion.pt" \
  --store resources/builtin_dos.npz --split "$RUN/split.json" --subset test --guidance cfg --omega 1.0 --t0 1000 \
  --steps 200 --batch-size 128 --step-lr 0.0 --omega-geometry 0.0 --repel-distance 1.0 --tie-equal-sites "$tie" \
  --device cpu --seed "$seed" --no-progress --out "$gen"
[ -f "$OUT/$name.json" ] || OMP_NUM_THREADS=1 "$PY" -m dosmatgen.cli evaluate score --generated "$gen" \
  --surrogate "$RUN/surrogate.pt" --store resources/builtin_dos.npz --split "$RUN/split.json" --no-novelty \
  --device cpu --no-progress --out "$OUT/$name.json"
