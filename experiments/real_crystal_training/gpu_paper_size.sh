#!/usr/bin/env bash
# Issue 35's remaining lever, prepared for one call on a lent GPU: the demo's diffusion training
# (shift10, posterior type head) at the paper's model size (paper_size_shift10.yaml) on the demo's
# store, split and standardiser (results/demo_run/), then the 100 real test crystals regenerated
# three times: with the demo's sampling recipe (joint.npz: config/demo.yaml's generate section
# through demo_flags.py, today run.sh's tt0g05), and with their own elements clamped (clamped.npz,
# csp_probe.py --generate-only; clamped_paper.npz with the paper's sampler). Only training and
# sampling run there (no pymatgen needed); the scoring runs here afterwards:
#
#   OUT=... [DEVICE=cuda] [STEPS=10000] [BATCH=256] bash experiments/real_crystal_training/gpu_paper_size.sh
#   DEVICE=cpu STEPS=20 LIMIT=4 OUT=/tmp/gps bash experiments/real_crystal_training/gpu_paper_size.sh   # a try here
#
#   .venv/bin/python -m dosmatgen.cli evaluate score --generated $OUT/joint.npz --surrogate results/demo_run/surrogate.pt \
#     --store resources/builtin_dos.npz --split $OUT/split_test_mp20.json --no-novelty --device cpu --out SCORE.json
#   .venv/bin/python experiments/real_crystal_training/csp_probe.py $OUT/diffusion.pt $OUT/split_test_mp20.json \
#     CSP.json --from-samples $OUT/clamped.npz          # and CSP_paper.json --from-samples $OUT/clamped_paper.npz
#
# Writes to $OUT: env.txt, train.log, metrics.csv, diffusion.pt (the validation-best weights),
# split_test_mp20.json, joint.npz, clamped.npz, clamped_paper.npz. The compact model's numbers to
# compare with are in results/real_crystal_training/demo375/README.md ("Session 11", "Session 12").
# Budget on an H200 (results/gpu_check/): ~10,000 paper-size crystals/s in training at batch 256,
# so 10,000 steps take about 5 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the output folder}
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-10000} BATCH=${BATCH:-256} LIMIT=${LIMIT:-}
HERE=experiments/real_crystal_training RUN=results/demo_run STORE=resources/builtin_dos.npz
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
stamp() { echo "[gpu-paper-size $(date -u +%H:%M:%S)] $*"; }
"$PY" -c 'import platform, torch; print("python", platform.python_version(), "torch", torch.__version__,
  "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))' | tee "$OUT/env.txt"
"$PY" "$HERE/test_part.py" "$RUN/split.json" "$OUT/split_test_mp20.json" mp20
stamp "train: paper size, batch $BATCH, $STEPS steps, $DEVICE"
"$PY" -m dosmatgen.cli train --kind diffusion --store "$STORE" --split "$RUN/split.json" \
  --standardiser "$RUN/standardiser.json" --config "$HERE/paper_size_shift10.yaml" --type-target posterior \
  --epochs 100000 --batch-size "$BATCH" --lr 1e-3 --max-steps "$STEPS" --device "$DEVICE" --seed 0 \
  --out "$WORK/model" --no-progress 2>&1 | tee "$OUT/train.log" | tail -n 3
cp "$WORK/model/metrics.csv" "$OUT/metrics.csv"
cp "$WORK/model/best.pt" "$OUT/diffusion.pt"
stamp "regenerate the real test crystals with the demo's recipe"
"$PY" -m dosmatgen.cli evaluate regenerate --checkpoint "$OUT/diffusion.pt" --store "$STORE" \
  --split "$OUT/split_test_mp20.json" --subset test ${LIMIT:+--limit "$LIMIT"} --guidance cfg --t0 1000 \
  --seed 0 --device "$DEVICE" --no-progress $("$PY" "$HERE/demo_flags.py") --out "$OUT/joint.npz"
stamp "the same crystals with their elements clamped"
"$PY" "$HERE/csp_probe.py" "$OUT/diffusion.pt" "$OUT/split_test_mp20.json" "$WORK/clamped.json" \
  --device "$DEVICE" ${LIMIT:+--limit "$LIMIT"} --samples "$OUT/clamped.npz" --generate-only
stamp "the same, with the paper's sampling recipe (a memorised crystal: the demo's recipe places fewer, session 12)"
"$PY" "$HERE/csp_probe.py" "$OUT/diffusion.pt" "$OUT/split_test_mp20.json" "$WORK/clamped_paper.json" \
  --device "$DEVICE" ${LIMIT:+--limit "$LIMIT"} --samples "$OUT/clamped_paper.npz" --generate-only --paper-recipe
rm -rf "$WORK" "$OUT/joint.npz.chunks"
stamp "done"
