#!/usr/bin/env bash
# Run GPAW jobs exported by `python -m dev_scripts.builtin export-jobs` on a host that has GPAW, one
# worker per core, then bring the folder back and `python -m dev_scripts.builtin ingest-jobs --jobs DIR`.
#
#   bash scripts/run_jobs.sh JOBS_DIR [WORKERS] [TIMEOUT_S]
#
# WORKERS defaults to the core count, TIMEOUT_S (per job, wall clock) to 3000 as in the build.
# PYTHON names the interpreter (or wrapper) that imports gpaw (default python3); it is given
# absolute paths only. Jobs run cheapest first (the candidate's estimated cost); a job that already
# has ID.out.npz is skipped, so rerunning resumes. The worker writes ID.out.npz atomically (also
# for a failure it records), so a job killed by the timeout or an interrupted run has none.
set -euo pipefail
jobs=$(cd "${1:?usage: bash scripts/run_jobs.sh JOBS_DIR [WORKERS] [TIMEOUT_S]}" && pwd)
workers=${2:-$(nproc)}
timeout_s=${3:-3000}
worker=$(cd "$(dirname "$0")/.." && pwd)/dosmatgen/dos/gpaw_worker.py
export PYTHON=${PYTHON:-python3} OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 WORKER=$worker \
  TIMEOUT_S=$timeout_s
one() {
  local job=$1 id=${1%.job.json}
  [ -e "$id.out.npz" ] && return 0
  timeout "$TIMEOUT_S" "$PYTHON" "$WORKER" "$job" "$id.out.npz" > "$id.log" 2>&1 || true
  echo "[run-jobs $(date -u +%H:%M:%S)] $(basename "$id"): $([ -e "$id.out.npz" ] && echo finished || echo 'no output')"
}
export -f one
for m in "$jobs"/*.meta.json; do  # cheapest first, by the candidate's estimated cost
  printf '%s %s\n' "$(grep -o '"cost": [0-9.e+-]*' "$m" | cut -d' ' -f2)" "${m%.meta.json}.job.json"
done | sort -g | cut -d' ' -f2- | xargs -P "$workers" -I{} bash -c 'one "$1"' _ {}
