#!/usr/bin/env bash
# Label the built-in dataset on a SLURM cluster: one array task per part (--part I/K), all writing
# into one shared folder without touching each other's ledgers or shards (the builder:
# dev_scripts/builtin, run from the repository root as `python -m dev_scripts.builtin build`).
#
#   sbatch --array=1-16 --cpus-per-task=16 --time=04:00:00 scripts/label_slurm_array.sh
#   # when every task has finished (or any time, to see progress):
#   .venv/bin/dosmatgen data merge --source builtin --shards resources/builtin --out resources/builtin_dos.npz
#
# A task that is cancelled or times out keeps what it finished; resubmitting the same array resumes.
# Environment: N_MAX (default 4000), SEED (0), GPAW_TIMEOUT (3000 s), OUT (resources/builtin).
# DOSMATGEN_DRY_RUN=1 prints the command instead of running it.
#SBATCH --job-name=dosmatgen-label
#SBATCH --output=logs/label-%A_%a.log
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=1-K}"
first=${SLURM_ARRAY_TASK_MIN:-1}
count=${SLURM_ARRAY_TASK_COUNT:?submit with sbatch --array=1-K}
part=$(( SLURM_ARRAY_TASK_ID - first + 1 ))
workers=${SLURM_CPUS_PER_TASK:-1}
cmd=(.venv/bin/python -m dev_scripts.builtin build --out "${OUT:-resources/builtin}" --workers "$workers"
     --n-max "${N_MAX:-4000}" --seed "${SEED:-0}" --timeout "${GPAW_TIMEOUT:-3000}" --part "$part/$count")
if [ "${DOSMATGEN_DRY_RUN:-0}" = 1 ]; then
  echo "${cmd[*]}"
else
  mkdir -p logs
  "${cmd[@]}"
fi
