#!/usr/bin/env bash
# Import-to-crystals benchmark (issue 36): the Python API's job (api_job.py) and the command line's
# (`dosmatgen sample`) for the same 16 crystals of 4 atoms at 200 steps on the shipped demo model,
# each as a whole process (interpreter start, imports, model load, sampling, writing), 2 threads,
# alternated 3 times; wall seconds from GNU time. Run from the repository root:
#   bash experiments/api_benchmark/run.sh > results/api_benchmark/timings.txt
set -euo pipefail
export OMP_NUM_THREADS=2
PY=.venv/bin/python
TIME=/usr/bin/time
for i in 1 2 3; do
  $TIME -f "api %e s wall, %U s user" $PY experiments/api_benchmark/api_job.py /tmp/api_benchmark_api > /dev/null
  $TIME -f "cli %e s wall, %U s user" .venv/bin/dosmatgen sample --checkpoint results/demo_run/diffusion.pt \
    --store resources/builtin_dos.npz --target builtin-wurtzite-Ga-P --num-atoms 4 --n 16 --steps 200 --seed 0 \
    --out /tmp/api_benchmark_cli --format cif --no-progress > /dev/null
done 2>&1 | grep -E "^(api|cli) "
