#!/usr/bin/env bash
# Set up everything dosmatgen needs on a fresh Debian/Ubuntu machine, offline except for the
# package registries: Debian's GPAW (DFT site-DOS engine, runs under /usr/bin/python3) and a
# virtual environment .venv with the package, the CPU torch 2.13.0 wheel, the workflow tools and the
# Materials Project client (mp-api, for `data download-mp`; its tests run it against stand-ins) and
# orb-models (Orb-v2; ~37 MB, 8 s; its tests use random weights, the real ones download at first use).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! /usr/bin/python3 -c "import gpaw" 2>/dev/null; then
  echo "[setup] installing Debian's gpaw + gpaw-data (DFT engine for site DOS)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gpaw gpaw-data >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import dosmatgen, torch, seaborn, sevenn, torch_sim, orb_models, snakemake, mp_api, moto, nbclient, ipykernel" 2>/dev/null; then
  echo "[setup] installing dosmatgen and its dependencies into .venv (torch==2.13.0, CPU)"
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check -e ".[dev,mlff,orb,workflow,mp]" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import dosmatgen, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "[setup] ok: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'), gpaw $(/usr/bin/python3 -c 'import gpaw; print(gpaw.__version__)')"
