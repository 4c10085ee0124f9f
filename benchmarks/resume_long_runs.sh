#!/usr/bin/env bash
# Resume the long MF-MDP runs (BENCHMARKS.md, "MF-MDP") on this machine, fresh or not: the E136
# scale run and the long-horizon comparison, each in the background, one torch thread each (two
# processes on two cores: more threads only make them wait on each other).
#
#   bash benchmarks/resume_long_runs.sh              # both; the comparison's variants in order
#   bash benchmarks/resume_long_runs.sh "MF-MDP"     # the comparison: only the named variants
#
# Their folders (benchmarks/results/long_mfmdp/run, benchmarks/results/mdp_compare/runs) are
# tracked by git: commit them as they go, pausing the runs while git reads them
# (kill -STOP / -CONT), so that a checkpoint and its parts are committed together. What is not
# tracked is rebuilt first, and the runs' identity checks refuse a resume if it came out different:
#   f_psi v1 (alpha 1 and 0), about a minute: benchmarks/results/mdp_models/fpsi*.pt (E136's)
#   f_psi v2 (residual; alpha 1 and 0), 30-40 minutes: benchmarks/results/mdp_models/fpsi_residual*.pt
#   the LCT-Policy adapters (J 4 and J 1), about 20 minutes each on an idle machine: runs/train_lct*/
# Logs: runs/logs/long_mfmdp.log, runs/logs/mdp_compare.log.
set -euo pipefail
cd "$(dirname "$0")/.."
make venv
mkdir -p runs/logs
if [ ! -f benchmarks/results/mdp_models/fpsi.pt ]; then
  .venv/bin/python benchmarks/transition_study.py --epochs 20 --data benchmarks/results/mdp_transition_data \
    --model-out benchmarks/results/mdp_models/fpsi.pt --out runs/transition_study_rebuilt.json
fi
variants=("$@")
wants() {  # whether the comparison runs variant $1 (every variant when none is named)
  [ ${#variants[@]} -eq 0 ] && return 0
  for v in "${variants[@]}"; do [ "$v" = "$1" ] && return 0; done
  return 1
}
# f_psi v2 (the residual output) for the comparison's f_psi variants, from both data folders
# (43 events; benchmarks/resume_transition_data.sh makes the second): 30-40 minutes.
if { wants "mfmdp (w/o LCT-Policy)" || wants "MF-MDP" || wants "w/o LCT-State" || wants "w/o sampling"; } \
    && [ ! -f benchmarks/results/mdp_models/fpsi_residual.pt ]; then
  .venv/bin/python benchmarks/transition_study.py --epochs 20 --residual --expect-events 43 \
    --data benchmarks/results/mdp_transition_data benchmarks/results/mdp_transition_data_2 \
    --model-out benchmarks/results/mdp_models/fpsi_residual.pt --out runs/transition_study_residual_rebuilt.json
fi
if { wants "MF-MDP" || wants "w/o LCT-State" || wants "MF-MDP (f_psi v1)"; } && [ ! -f runs/train_lct/adapters/lct_policy/adapter_model.safetensors ]; then
  .venv/bin/mfray train lct --config jobs/configs/train_lct.yaml
fi
if wants "w/o sampling" && [ ! -f runs/train_lct_j1/adapters/lct_policy/adapter_model.safetensors ]; then
  .venv/bin/mfray train lct --config jobs/configs/train_lct.yaml --set lct.instances=1 --set out=runs/train_lct_j1
fi
export OMP_NUM_THREADS=1
nohup .venv/bin/python benchmarks/rss_watch.py --log benchmarks/results/long_mfmdp/rss.csv \
  --state benchmarks/results/long_mfmdp/run/in_progress/E136__mfmdp__s0.ckpt.json -- \
  .venv/bin/mfray simulate --config jobs/configs/long_mfmdp.yaml >> runs/logs/long_mfmdp.log 2>&1 &
if [ ${#variants[@]} -eq 0 ]; then
  nohup .venv/bin/python benchmarks/mdp_compare.py >> runs/logs/mdp_compare.log 2>&1 &
else
  nohup .venv/bin/python benchmarks/mdp_compare.py --variants "${variants[@]}" >> runs/logs/mdp_compare.log 2>&1 &
fi
echo "started: tail -f runs/logs/long_mfmdp.log runs/logs/mdp_compare.log"
