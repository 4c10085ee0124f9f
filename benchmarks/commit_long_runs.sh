#!/usr/bin/env bash
# Commit the long runs' tracked folders (benchmarks/resume_long_runs.sh and
# resume_transition_data.sh start the runs) with a message, pausing the simulations while git
# reads them, so that each checkpoint is committed with exactly the parts it names (a run writes
# its parts, then its checkpoint).
#   bash benchmarks/commit_long_runs.sh "E136 at N actions; the comparison's MF-MDP variant at M"
set -euo pipefail
cd "$(dirname "$0")/.."
pids=$(pgrep -f "mfray simulate --config jobs/configs/(long_mfmdp|mdp_compare|mdp_transition_data)" || true)
for p in $pids; do kill -STOP "$p"; done
trap 'for p in $pids; do kill -CONT "$p" 2>/dev/null || true; done' EXIT
git add benchmarks/results/long_mfmdp benchmarks/results/mdp_compare
[ -d benchmarks/results/mdp_transition_data_2 ] && git add benchmarks/results/mdp_transition_data_2
for p in $pids; do kill -CONT "$p"; done
git commit -qm "${1:?give a commit message}"
git log --oneline -1
