#!/usr/bin/env bash
# Build .devpack/ for one call on a lent GPU machine (Python 3.12, its own CUDA torch, no network,
# no GPAW, no pymatgen): what results/plan/h200/ and resources/builtin/offsite-h200-2.md needed,
# prepared in one go (~5 min here, mostly xz).
#
#   bash scripts/device_carry.sh [N_JOBS] [SKIP]     # N_JOBS MP-20 GPAW jobs (default 60), SKIP for a local build
#
# Writes .devpack/ (add `/.devpack/` to .git/info/exclude and carry it):
#   devsite.tar.xz     cp312 wheels unpacked and pruned (~21 MB): sevenn 0.13.0 with only the 7net-0
#                      weights, torch-sim-atomistic 0.3.0, ase, vesin + vesin-torch (the torch-$TORCH_MM
#                      build only), matscipy, tables + blosc2 / numexpr / ndindex / platformdirs,
#                      jsonschema + referencing / rpds-py / jsonschema-specifications
#   jobs/              `python -m dev_scripts.builtin export-jobs --source mp20`, cheapest first
#   gpaw_root.tar.xz   scripts/pack_gpaw_root.py (~40 MB)
# There:
#   xz -dc .devpack/devsite.tar.xz | tar -xf - -C /tmp && export PYTHONPATH=$PWD:/tmp/.devsite
#   OUT=$OUT/label setsid bash scripts/label_on_device.sh .devpack/gpaw_root.tar.xz .devpack/jobs 12 480 &
#   ONLY=rates OUT=$OUT/gpu PLAN_ARGS="--threads 4" bash scripts/gpu_check.sh
# The call's whole tree has a size limit (64 MiB where this was written): the tracked files travel
# too, so keep the jobs few and the wheels pruned.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-60}; SKIP=${2:-20}; TORCH_MM=${TORCH_MM:-2.11}
D=.devpack; W=$D/wheels; S=$D/.devsite
rm -rf "$W" "$S" && mkdir -p "$W"
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d "$W" \
  sevenn==0.13.0 torch-sim-atomistic==0.3.0 ase==3.29.0 vesin==0.6.2 vesin-torch==0.6.2 braceexpand matscipy==1.3.1 \
  tables blosc2 numexpr ndindex platformdirs jsonschema jsonschema-specifications referencing rpds-py 2>&1 \
  | grep -v "^WARNING: Location" || true
python3 -m pip install -q --no-deps --no-index --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  --target "$S" --no-compile "$W"/*.whl 2>&1 | grep -v "WARNING" || true
P=$S/sevenn/pretrained_potentials
find "$P" -mindepth 1 -maxdepth 1 ! -name SevenNet_0__11Jul2024 -exec rm -rf {} +
rm -rf "$S"/sevenn/pair_e3gnn "$S"/sevenn/pair_d3*.so "$S"/ase/test "$S"/ase/gui "$S"/bin "$S"/blosc2/lib/libblosc2.a \
  "$S"/blosc2/include "$S"/blosc2/tests
find "$S"/vesin_torch -mindepth 1 -maxdepth 1 -name "torch-*" ! -name "torch-$TORCH_MM" -exec rm -rf {} +
find "$S" -name __pycache__ -prune -exec rm -rf {} +
tar -C "$D" -cf - .devsite | xz -T0 -3 > "$D/devsite.tar.xz"
rm -rf "$W" "$S"
rm -rf "$D/jobs"
.venv/bin/python -m dev_scripts.builtin export-jobs --shards resources/builtin --jobs "$D/jobs" --n "$N" --skip "$SKIP" \
  --source mp20 --max-atoms 20 --no-progress
/usr/bin/python3 scripts/pack_gpaw_root.py --jobs "$D/jobs" --out "$D/gpaw_root.tar.xz"
du -sh "$D"/*
