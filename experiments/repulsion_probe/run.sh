#!/usr/bin/env bash
# Issue 18, small: why generated real crystals have two atoms on one site, and the pair-repulsion
# option (dosmatgen.model.repulsion), on the recorded demo diffusion model (work/demo, the demo run
# of commit 8e45d61) and the 71 real MP-20 crystals of its test split (split_mp20test.json: the demo
# split with its test part cut to the mp20 ids). T = 1000 from the prior, CFG ω = 1, 200 steps,
# seeds 0-3 (all 71 crystals in one batch per seed). Columns of probe.py: distance, until, steps,
# seeds, step_lr, ω_geometry (0, or 'none' = ω on all channels).
#   bash experiments/repulsion_probe/run.sh     # ~10 min on 2 cores; logs to results/repulsion_probe/
set -euo pipefail
cd "$(dirname "$0")/../.."
P="results/repulsion_probe"        # logs (and the split) live here
E="experiments/repulsion_probe"    # the probe scripts
PY=${PY:-.venv/bin/python}
{
  "$PY" "$E/trajectory.py" 1
  for args in "0 0 200 0,1,2,3 0" "1.0 0 200 0,1,2,3 0" "1.0 200 200 0,1,2,3 0" "1.0 400 200 0,1,2,3 0" \
              "1.0 600 200 0,1,2,3 0" "0 0 200 0,1,2,3 1e-5 none" "1.0 200 200 0,1,2,3 1e-5 none"; do
    "$PY" "$E/probe.py" $args
  done
} 2>&1 | grep -v -e "Pauling" -e "val = self.func" | tee "$P/probe.log.tmp"
mv "$P/probe.log.tmp" "$P/probe.log"
# side probe: the predictor's coordinate (eta_x) and lattice (eta_l) noise scaled, no repulsion
{
  for args in "0.5 1.0" "0.7 1.0" "1.3 1.0" "1.0 0.5"; do
    "$PY" "$E/noise_probe.py" $args 200 0,1,2,3 | grep mean
  done
} 2>&1 | grep -v -e "Pauling" -e "val = self.func" | tee "$P/noise.log.tmp"
mv "$P/noise.log.tmp" "$P/noise.log"
