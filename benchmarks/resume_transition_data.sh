#!/usr/bin/env bash
# Resume f_psi's second batch of training data in the background, one torch thread: the all-real
# mfmdp runs of jobs/configs/mdp_transition_data.yaml's events after its first 8. Those 8 are in
# benchmarks/results/mdp_transition_data, which stays as it is: the E136 run's f_psi trains on
# exactly them (benchmarks/resume_long_runs.sh rebuilds it there, and E136's identity pins it).
# The rest go to benchmarks/results/mdp_transition_data_2 (tracked: commit it as it goes with
# benchmarks/commit_long_runs.sh). About 5 minutes an event on one core; resumable.
#   bash benchmarks/resume_transition_data.sh       # log: runs/logs/mdp_transition_data.log
set -euo pipefail
cd "$(dirname "$0")/.."
make venv
mkdir -p runs/logs
mapfile -t events < <(grep -o '\.\./shared/data/twitter_rumdect/E[0-9]*\.json' jobs/configs/mdp_transition_data.yaml)
export OMP_NUM_THREADS=1
nohup .venv/bin/mfray simulate --config jobs/configs/mdp_transition_data.yaml --out benchmarks/results/mdp_transition_data_2 \
  --events "${events[@]:8}" >> runs/logs/mdp_transition_data.log 2>&1 &
echo "started ${#events[@]} - 8 events: tail -f runs/logs/mdp_transition_data.log"
