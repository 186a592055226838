# DOSMatGen replication workflow. Thin: every rule calls the `dosmatgen` command line; all logic
# lives in the Python package. Targets (`snakemake --cores all <target>`):
#   data     dataset store, train/val/test split, DOS standardiser, dataset summary
#   models   diffusion model (classifier-free guidance), time-dependent regressor (classifier
#            guidance), surrogate DOS predictor
#   tables   Table 1 (DOS MAE), Table 2 (match rates), formation energies, provenance -> results/
#   studies  constrained-generation studies (masked, template, fixed type), IrO2 screen, window sweep
#   figures  Fig. 2 / B.1 formation energies, study figures, figures/README.md gallery
#   all      everything above (default)
#   tables_dft  Table 1 judged by GPAW as well as the surrogate on a sample (evaluate.dft_judge; not in all)
# Report: after a run, `snakemake <same options> --report report.zip` packs the tables, figures,
# claims and provenance registered by the rules (captions in workflow/report/) into one HTML report.
# Config: config/demo.yaml unless --configfile is given (e.g. config/ci.yaml, config/paper.yaml),
# or use a profile: --profile workflow/profiles/{ci,demo,paper,slurm}. The config is validated
# against workflow/schemas/config.schema.yaml before anything runs.

import dataclasses
import json
import os
import shlex
import sys

from snakemake.utils import min_version

from dosmatgen.config import cli_flags, validate_run_config
from dosmatgen.generate.options import SamplerOptions

min_version("8.0")


# The demo config is the default; a --configfile (or a profile's configfile) replaces it entirely
# rather than being layered over it, so a run's settings are exactly those of its own file.
if not getattr(workflow, "overwrite_configfiles", None):

    configfile: "config/demo.yaml"


# Where the settings came from, for error messages: the config file(s), then --config overrides.
CONFIG_SOURCE = " + ".join(
    [str(p) for p in getattr(workflow, "configfiles", [])]
    + (["--config"] if getattr(getattr(workflow, "config_settings", None), "config", None) else [])
) or "config"
RUN = validate_run_config(
    config,
    source=CONFIG_SOURCE,
    schema_path=os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
)
W = RUN["outputs"]["work"]  # intermediate products
R = RUN["outputs"]["results"]  # tables, claims, provenance
F = RUN["outputs"]["figures"]  # figures + gallery
LOGS = f"{W}/logs"
THREADS = RUN["threads"]
GPU = 1 if RUN["device"].startswith("cuda") else 0  # a `gpu` resource for cluster executors

# Bash strict mode (Snakemake's default prefix, which shell.prefix replaces) and the `dosmatgen`
# entry point of the Python running Snakemake, also when its venv is not activated.
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")


# README.md (and the docs pages) show copies of results/*.md and results/data_info.txt, which the
# tests check are current (scripts/sync_readme_tables.py). A run that writes this repository's own
# results/ (the demo profile: the README's main command) refreshes them once, after every job succeeded.
if os.path.isfile(os.path.join(workflow.basedir, "README.md")) and os.path.realpath(R) == os.path.realpath(
    os.path.join(workflow.basedir, "results")
):

    onsuccess:
        shell(f"{shlex.quote(sys.executable)} {shlex.quote(os.path.join(workflow.basedir, 'scripts', 'sync_readme_tables.py'))}")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/figures.smk"


localrules:
    all,
    data,
    models,
    tables,
    studies,
    figures,
    tables_dft,


rule all:
    default_target: True
    input:
        TABLE_FILES,
        STUDY_FILES,
        FIGURE_FILES,


rule data:
    input:
        DATA_FILES,


rule models:
    input:
        MODEL_FILES,


rule tables:
    input:
        TABLE_FILES,


rule studies:
    input:
        STUDY_FILES,


rule figures:
    input:
        FIGURE_FILES,


rule tables_dft:
    input:
        DFT_TABLES,
