#!/usr/bin/env bash
# One call on a CUDA machine: the demo profile's diffusion training and its CFG regeneration of the
# test split, on the GPU, so that they can be compared with the CPU demo run (results/demo_run/).
#
#   OUT=work/gpu_check bash scripts/gpu_check.sh        # any machine with a CUDA GPU
#
# Uses whatever python3 has torch with CUDA and torch_geometric; dosmatgen runs from this checkout
# (PYTHONPATH), so neither pymatgen nor SevenNet is needed here. Writes to $OUT (at most 8 files):
#   env.txt                python, torch, GPU
#   bench_cuda.json        `dosmatgen bench` (training throughput, seconds per sampling step)
#   metrics.csv            the training run's per-epoch losses
#   diffusion_cuda.pt      its best checkpoint
#   cfg_T{200,500,1000}.npz   the regenerated test structures (demo settings: 200 steps, 100 structures)
#   rates_paper_cuda.json  `dosmatgen plan --profile paper` rates measured here (then, anywhere:
#                          dosmatgen plan --profile paper --rates OUT/rates_paper_cuda.json)
#   relax_scan_cuda.json   batched SevenNet FIRE steps at 6 to 256 crystals per batch (~4 min:
#                          7 ms per crystal-step on an H200; scripts/gpu_relax_scan.py, needs sevenn, torch-sim)
# ONLY=rates skips the training and regeneration (recorded in results/gpu_check/) and runs only
# the plan's rates and the relaxation scan.
# Score the regenerated sets where pymatgen is installed:
#   dosmatgen evaluate score --generated OUT/cfg_T1000.npz --surrogate results/demo_run/surrogate.pt ...
# Same seed, store, split and settings as the demo profile (config/demo.yaml); only --device differs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the output folder}
PY=${PYTHON:-python3}
STORE=${STORE:-resources/builtin_dos.npz}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu MAX_STEPS=20 LIMIT=4: a quick try of this script
MAX_STEPS=${MAX_STEPS:-10000}
LIMIT=${LIMIT:-100}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
dmg() { "$PY" -m dosmatgen.cli "$@"; }
stamp() { echo "[gpu-check $(date -u +%H:%M:%S)] $*"; }

"$PY" - > "$OUT/env.txt" <<'EOF'
import platform, torch, torch_geometric
print("python", platform.python_version())
print("torch", torch.__version__, "torch_geometric", torch_geometric.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
EOF
cat "$OUT/env.txt"

if [ "${ONLY:-all}" = all ]; then
stamp "bench"
dmg bench --device "$DEVICE" --sizes compact,paper --only train,sample,regenerate,surrogate --json "$OUT/bench_cuda.json"

stamp "split (seed 0, as the demo profile)"
dmg data split --store "$STORE" --out "$WORK/split.json" --standardiser "$WORK/standardiser.json" --seed 0 \
  --fractions 0.6 0.2 0.2

stamp "train diffusion (demo profile: compact, batch 64, lr 1e-3, max $MAX_STEPS steps) on $DEVICE"
t0=$(date +%s)
dmg train --kind diffusion --store "$STORE" --split "$WORK/split.json" --standardiser "$WORK/standardiser.json" \
  --size compact --epochs 5000 --batch-size 64 --lr 1.0e-3 --max-steps "$MAX_STEPS" --device "$DEVICE" --seed 0 \
  --out "$WORK/diffusion" --no-progress
stamp "training took $(( $(date +%s) - t0 )) s"
cp "$WORK/diffusion/metrics.csv" "$OUT/metrics.csv"
cp "$WORK/diffusion/best.pt" "$OUT/diffusion_cuda.pt"

for t in 200 500 1000; do
  stamp "regenerate cfg T=$t"
  t0=$(date +%s)
  dmg evaluate regenerate --checkpoint "$WORK/diffusion/best.pt" --store "$STORE" --split "$WORK/split.json" \
    --subset test --guidance cfg --omega 1.0 --t0 "$t" --steps 200 --limit "$LIMIT" --batch-size 128 \
    --device "$DEVICE" --seed 0 --out "$WORK/cfg_T$t.npz" --no-progress
  stamp "regeneration T=$t took $(( $(date +%s) - t0 )) s"
  cp "$WORK/cfg_T$t.npz" "$OUT/"
done
fi
stamp "plan: paper-profile rates on $DEVICE (parts whose packages are missing here stay unmeasured)"
dmg plan --profile paper --device "$DEVICE" --save-rates "$OUT/rates_paper_$DEVICE.json" ${PLAN_ARGS:-} \
  || stamp "plan failed (see above); the rest of the check stands"
stamp "batched relaxation at growing batch sizes on $DEVICE"
"$PY" scripts/gpu_relax_scan.py --store "$STORE" --device "$DEVICE" --sizes ${SCAN_SIZES:-6 16 64 256} \
  --out "$OUT/relax_scan_$DEVICE.json" || stamp "relaxation scan failed (see above)"
stamp "done"
