"""f_psi's training data from real events (SPEC section 6, "Training data"): per step, the real
histogram m*_t, the text mean field r_{t-1} the summariser wrote over the real actions so far,
the step's real profiles and the exogenous signal c_t.

They come from an `mfmdp` run whose every agent is a warm-up agent (sim_start = horizon): every
action is real, m_t is the real histogram m*_t, and the summariser is shown m*_t and the real
actions step after step, exactly as in a simulation's warm-up. The run's records hold all of it
(macro_state, mean_field, state_text, signal), and `event_sequence` turns them into tokens with
`assemble_sequence`, the same assembly the simulation's tracker uses (mfray.mdp.tracker).

    mfray simulate --config jobs/configs/mdp_transition_data.yaml    # the runs (resumable)
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from mfray.mdp.encoder import HashingEncoder
from mfray.mdp.macro import STATES
from mfray.mdp.tracker import warmup_distribution
from mfray.types import StepRecord


def real_steps(records: Sequence[StepRecord]) -> list[list[StepRecord]]:
    """The records of one all-real mfmdp run, grouped by step in order (agents in order within a
    step). Raises ValueError for records of another method or with simulated actions."""
    bad = [r.agent_index for r in records if r.macro_state is None or not r.warmup or r.real_text is None]
    if bad:
        raise ValueError(f"event {records[0].event_id}: agents {bad[:5]} are not real actions of an mfmdp run "
                         "(make the data with sim_start = horizon, method mfmdp)")
    steps: dict[int, list[StepRecord]] = {}
    for r in sorted(records, key=lambda r: r.agent_index):
        steps.setdefault(r.step, []).append(r)
    return [steps[t] for t in sorted(steps)]


def step_histograms(steps: Sequence[Sequence[StepRecord]]) -> list[list[float]]:
    """m*_t of each step of an all-real run, as its records carry it (STATES order)."""
    return [[json.loads(step[0].macro_state)[s] for s in STATES] for step in steps]


def event_sequence(records: Sequence[StepRecord], encoder: HashingEncoder, warmup_agents: int = 48,
                   annotator: str = "offline"):
    """The EventSequence (tokens x [T, d_in], real histograms m [T, 3]) of one all-real mfmdp run.
    m_0 is the attitude label frequency over the first `warmup_agents` agents, labelled by the
    local `annotator`, exactly as a simulation with sim_start = warmup_agents computes its m_0
    (mfray.mdp.tracker.build_tracker). Raises ValueError for records of another method or with
    simulated actions."""
    import torch

    from mfray.mdp.transition import assemble_sequence
    from mfray.mdp.transition_train import EventSequence

    if not records:
        raise ValueError("no records")
    ordered = real_steps(records)
    m_star = np.array(step_histograms(ordered), dtype=np.float32)
    warm = [r for step in ordered for r in step if r.agent_index < warmup_agents and r.real_text is not None]
    m0 = warmup_distribution([r.real_text for r in warm], records[0].topic, records[0].language, annotator)
    r_prev = [encoder.encode([step[0].mean_field])[0] for step in ordered]
    profiles = [encoder.encode([r.state_text for r in step]) for step in ordered]
    signals = [encoder.encode([step[0].signal])[0] if step[0].signal else None for step in ordered]
    x = assemble_sequence(m0, m_star, r_prev, profiles, signals)
    return EventSequence(x, torch.from_numpy(m_star))


def load_sequences(folder, encoder_dim: int) -> dict:
    """{event_id: EventSequence} of every run in the dataset folder `folder` (mfray.sim.store),
    each run an all-real mfmdp run (`event_sequence`)."""
    from pathlib import Path

    from mfray.sim.store import published_runs, read_runs

    encoder = HashingEncoder(encoder_dim)
    runs = published_runs(Path(folder)).values()
    if not runs:
        raise FileNotFoundError(f"no finished runs in {folder}: make them with `mfray simulate --config "
                                "jobs/configs/mdp_transition_data.yaml` (or one like it)")
    return {run.meta["event_id"]: event_sequence(records, encoder) for run, records in read_runs(runs)}
