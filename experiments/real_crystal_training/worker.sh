#!/usr/bin/env bash
# Takes lines "STAGE VARIANT SEED [RECIPE]" from QUEUE (default work/real_crystal_training/queue) one at a
# time under a lock and runs run.sh on each; start one worker per core.
set -uo pipefail
cd "$(dirname "$0")/../.."
QUEUE=${QUEUE:-work/real_crystal_training/queue}
exec 9>"$QUEUE.lock"
while :; do
  flock 9
  line=$(head -n 1 "$QUEUE")
  [ -n "$line" ] && sed -i 1d "$QUEUE"
  flock -u 9
  [ -z "$line" ] && break
  echo "$(date -u +%FT%TZ) start $line"
  bash experiments/real_crystal_training/run.sh $line && echo "$(date -u +%FT%TZ) done $line" || echo "$(date -u +%FT%TZ) FAILED $line"
done
