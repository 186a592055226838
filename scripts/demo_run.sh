#!/usr/bin/env bash
# Record one demo run: the committed results/ and figures/ come from this script.
#
#   bash scripts/demo_run.sh            # needs a clean, committed work tree (the commit is recorded)
#   bash scripts/demo_run.sh --resume   # continue an interrupted recording (no --forceall)
#   bash scripts/demo_run.sh --update   # after a committed config/code change: rerun only what
#                                       # Snakemake sees as changed, appending to the same record
#
# Runs the workflow's targets one after another (data, models, tables, studies, figures, all) with
# the demo profile, times each, and writes into results/demo_run/:
#   snakemake_<target>.log   Snakemake's output of each target
#   run.jsonl                one line per target: command, commit, start time, wall seconds, cores
#   diffusion.pt, regressor.pt, surrogate.pt, split.json, standardiser.json   what the tables used
# The first target is run with --forceall so that every output is recomputed from this commit.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE=.venv/bin/snakemake
PROFILE=workflow/profiles/demo
OUT=results/demo_run
WORK=work/demo
resume=0
update=0
case "${1:-}" in
  --resume) resume=1 ;;
  --update) update=1 ;;
  "") ;;
  *) echo "usage: bash scripts/demo_run.sh [--resume | --update]" >&2; exit 2 ;;
esac

# The recorded commit must describe the code and config; outputs (results/, figures/) and the
# background dataset build (resources/builtin/) may be dirty.
if [ $resume -eq 0 ] && [ -n "$(git status --porcelain --untracked-files=no -- . ':!results' ':!figures' ':!resources/builtin')" ]; then
  echo "[demo-run] the work tree has uncommitted changes; commit first so the run is tied to a commit" >&2
  exit 2
fi
mkdir -p "$OUT"
commit=$(git rev-parse HEAD)
runlog="$OUT/run.jsonl"
[ $resume -eq 0 ] && [ $update -eq 0 ] && rm -rf "$runlog" "$OUT"/snakemake_*.log "$WORK"

force="--forceall"
[ $resume -eq 1 ] && force="--rerun-incomplete"
[ $update -eq 1 ] && force="--rerun-incomplete"
suffix=""
[ $update -eq 1 ] && suffix="_update_${commit:0:7}"
for target in data models tables studies figures all; do
  cmd="$SNAKEMAKE --profile $PROFILE $force $target"
  echo "[demo-run] $(date -u +%H:%M:%S) $cmd"
  t0=$(date +%s)
  start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  log="$OUT/snakemake_$target$suffix.log"
  $cmd > "$log" 2>&1 || { tail -30 "$log"; exit 1; }
  t1=$(date +%s)
  printf '{"target": "%s", "command": "%s", "commit": "%s", "start": "%s", "wall_s": %d, "cores": %d}\n' \
    "$target" "$cmd" "$commit" "$start" $((t1 - t0)) "$(nproc)" >> "$runlog"
  # Only the first target recomputes everything; later ones reuse what it made.
  [ "$force" = "--forceall" ] && force=""
done

for kind in diffusion regressor surrogate; do
  [ -e "$WORK/models/$kind/best.pt" ] && cp "$WORK/models/$kind/best.pt" "$OUT/$kind.pt"
done
cp "$WORK"/data/split.json "$WORK"/data/standardiser.json "$OUT"/
echo "[demo-run] done; per-target wall times in $runlog"
