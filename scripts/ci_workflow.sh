#!/usr/bin/env bash
# Paper-regression check of the workflow on the tiny `ci` profile (called by .ci/run).
#
#   bash scripts/ci_workflow.sh            # run / resume the ci workflow, then check it
#   bash scripts/ci_workflow.sh --fresh    # delete work/ci and results-ci first
#
# GATES (the script fails if any fails):
#   1. `snakemake --lint` is clean;
#   2. `snakemake --profile workflow/profiles/ci all` succeeds (every rule of the paper pipeline:
#      data, 3 models, regeneration at T in {200,500,1000} x {cfg, classifier, uncond}, scoring,
#      the DOS-lookup baseline, MLFF formation energies, the five studies, figures, gallery)
#      - Snakemake itself fails when a declared table or figure file is not produced;
#   3. a second run has nothing to do (incremental: outputs are complete and up to date);
#   4. Snakemake's report of the run (`--report results-ci/report.zip`: the tables, figures, claims
#      and provenance the rules register, captions in workflow/report/) is written, is a valid zip
#      with an HTML page, and holds Tables 1-2, the claims, the provenance, Fig. 2 and a study figure;
#   5. every table / figure file in results-ci/ and results-ci/figures/ is well-formed
#      (CSV rows as wide as the header, JSON parses, PNG decodes, PDF complete) and
#      has no NaN or inf (`dosmatgen figures check`);
#   6. `snakemake --profile workflow/profiles/authors tables` on resources/reference_release (the
#      authors' miniature release, committed: their model imported, not trained; their split)
#      succeeds and its tables are well-formed.
# INFORMATIONAL (printed, never fails the script):
#   Tables 1-2 and the formation summary with the paper's numbers beside ours, and the paper's
#   qualitative claims (CFG beats classifier guidance, MAE grows with T, ...) as PASS/FAIL
#   (results-ci/claims.md, written by the workflow's `dosmatgen evaluate claims`). The ci run
#   trains for a few epochs on a few dozen crystals, so its numbers say nothing about the
#   method; the claims are shown to prove the comparison code runs on real outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SNAKEMAKE=.venv/bin/snakemake
PROFILE=workflow/profiles/ci
RESULTS=results-ci
FIGURES=results-ci/figures
start=$(date +%s)
stamp() { echo "[ci-workflow] $* ($(( $(date +%s) - start )) s)"; }

if [ "${1:-}" = "--fresh" ]; then
  rm -rf work/ci "$RESULTS" work/authors results-authors
fi

stamp "gate 1: snakemake --lint"
$SNAKEMAKE --profile "$PROFILE" --lint >/tmp/ci_workflow_lint.$$ 2>&1 || { cat /tmp/ci_workflow_lint.$$; exit 1; }
grep -q "Congratulations" /tmp/ci_workflow_lint.$$ || { cat /tmp/ci_workflow_lint.$$; echo "lint not clean"; exit 1; }
rm -f /tmp/ci_workflow_lint.$$

stamp "gate 2: snakemake --profile $PROFILE all"
$SNAKEMAKE --profile "$PROFILE" all

stamp "gate 3: a second run has nothing to do"
if ! $SNAKEMAKE --profile "$PROFILE" all --dry-run 2>&1 | grep -q "Nothing to be done"; then
  $SNAKEMAKE --profile "$PROFILE" all --dry-run --quiet rules || true
  echo "[ci-workflow] FAIL: the workflow is not up to date after a complete run"; exit 1
fi

stamp "gate 4: snakemake --report $RESULTS/report.zip"
rm -f "$RESULTS/report.zip"
$SNAKEMAKE --profile "$PROFILE" --report "$RESULTS/report.zip"
$PY - "$RESULTS/report.zip" <<'PYEOF'
import sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as z:  # BadZipFile: not a zip
    broken, names = z.testzip(), z.namelist()
base = {n.rsplit("/", 1)[-1] for n in names}
need = {"table1_dos_mae.csv", "table2_match_rates.csv", "claims.md", "provenance.json", "fig2_formation_T1000.png"}
study = {"fig4_masked.png", "fig5_template.png", "fig6_fixed_type.png", "window_sweep.png"}
html = [n for n in names if n.endswith(".html")]
problems = ([f"corrupt member {broken}"] if broken else []) + ([] if html else ["no HTML page"]) + \
    [f"{n} missing" for n in sorted(need - base)] + ([] if study & base else ["no study figure"])
if problems:
    sys.exit(f"[ci-workflow] FAIL: {path}: " + "; ".join(problems))
print(f"[ci-workflow] {path}: {len(names)} files, page {html[0]}")
PYEOF

stamp "gate 5: files well-formed, no NaN"
$PY -m dosmatgen.cli figures check "$RESULTS" "$FIGURES" --require \
  "$RESULTS/table1_dos_mae.csv" "$RESULTS/table2_match_rates.csv" "$RESULTS/provenance.json" \
  "$FIGURES/fig2_formation_T1000.png" "$FIGURES/fig2_formation_T1000.pdf" \
  "$FIGURES/figB1_formation_T200_T500.png" "$FIGURES/figB1_formation_T200_T500.pdf" "$FIGURES/README.md"

stamp "gate 6: snakemake --profile workflow/profiles/authors tables (the authors' miniature release)"
# the profile as a user runs it, but with short training, sampling and relaxations (a few
# epochs' surrogate and an untrained miniature make long runs on junk crystals pointless here)
mkdir -p work
$PY - <<'PYEOF'
import yaml
cfg = yaml.safe_load(open("config/authors.yaml"))
cfg["evaluate"].update(relax_limit=2, relax_steps=10, fmax=0.1, match_timeout=5)
cfg["train"]["surrogate"] = {"epochs": 5, "batch_size": 16, "max_steps": 30}
cfg["generate"].update(limit=8, steps=100)  # 6 sets of the whole split at 1000 steps took ~19 of CI's minutes
yaml.safe_dump(cfg, open("work/authors_ci.yaml", "w"))
PYEOF
$SNAKEMAKE --profile workflow/profiles/authors --configfile work/authors_ci.yaml --cores 2 tables
$PY -m dosmatgen.cli figures check results-authors --require results-authors/table1_dos_mae.csv \
  results-authors/table2_match_rates.csv results-authors/provenance.json

stamp "informational: ours vs the paper at ci scale (tiny model, a few epochs; nothing here gates)"
for table in table1_dos_mae table2_match_rates formation_energies claims; do
  echo; cat "$RESULTS/$table.md"
done
echo

stamp "ok: all gates passed"
