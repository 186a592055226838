#!/usr/bin/env bash
# Golden files for the generation redesign (issue 33): sampling outputs of the committed demo models
# through the command line (the interface the redesign must not change), made BEFORE the first move
# and compared after it by tests/test_golden.py.
#
#   bash dev_scripts/make_golden.sh [OUT]     # default OUT: tests/golden
#
# Each setting: one fixed seed, one thread (torch.set_num_threads(1) via DOSMATGEN_THREADS/OMP), the
# committed results/demo_run/{diffusion,regressor,surrogate}.pt, the demo's 200 strided steps.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-tests/golden}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RUN=results/demo_run
STORE=resources/builtin_dos.npz
mkdir -p "$OUT"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
dm() { "$PY" -m dosmatgen.cli "$@"; }

# 1. regenerate 20 test structures per guidance at T = 200 and T = 1000
for g in cfg classifier uncond; do
  for t in 200 1000; do
    extra=()
    [ "$g" = classifier ] && extra=(--regressor "$RUN/regressor.pt" --guidance-scale 0.03)
    dm evaluate regenerate --checkpoint "$RUN/diffusion.pt" "${extra[@]}" --store "$STORE" \
      --split "$RUN/split.json" --subset test --limit 20 --guidance "$g" --t0 "$t" --steps 200 \
      --batch-size 128 --seed 0 --device cpu --no-progress --out "$W/regen_${g}_T${t}.npz"
    "$PY" dev_scripts/golden_arrays.py regen "$W/regen_${g}_T${t}.npz" "$OUT/regen_${g}_T${t}.npz"
  done
done

# 2. one masked and one template study setting (no relaxation in either)
common=(--checkpoint "$RUN/diffusion.pt" --surrogate "$RUN/surrogate.pt" --store "$STORE" --steps 200 --seed 0 --quiet)
dm studies masked "${common[@]}" --n 6 --natoms 4 5 --out "$W/masked"
"$PY" dev_scripts/golden_arrays.py study "$W/masked" "$OUT/study_masked.npz"
dm studies template "${common[@]}" --n 6 --t0 200 350 --out "$W/template"
"$PY" dev_scripts/golden_arrays.py study "$W/template" "$OUT/study_template.npz"

# 3. one `dosmatgen sample` call: 6 crystals of 4 atoms, atoms 0 and 1 on the sites of a stored crystal
first=$("$PY" -c "import json; print(json.load(open('$RUN/split.json'))['test'][0])")
dm sample --checkpoint "$RUN/diffusion.pt" --store "$STORE" --target "$first:0" --num-atoms 4 \
  --condition-atoms 0,1 --n 6 --steps 200 --seed 0 --device cpu --no-progress --format extxyz --out "$W/sample"
"$PY" dev_scripts/golden_arrays.py sample "$W/sample" "$OUT/sample.npz"
echo "golden files in $OUT"
