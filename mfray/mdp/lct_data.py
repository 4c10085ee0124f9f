"""LCT-Policy's training samples (SPEC section 6) from all-real mfmdp runs: one sample per step t of
an event, holding what the policy saw at t in an MF-MDP simulation (topic, the text mean field
r in force, m_t, the signal) and, per agent, its profile text, its real action and its state
s_i, plus the real histograms m*_{t+1..t+K} the lookahead head is scored against.

The runs are the ones f_psi trains on (mfray.mdp.data; `mfray simulate --config
jobs/configs/mdp_transition_data.yaml`): every action real, so the summariser's r_t was written
over the real actions and m_t is the real histogram m*_t. s_i is the attitude label of the
agent's own real action (the state that produced it; at simulation s_i ~ Cat(m_t)); an action
without a label draws s_i from m_t, seeded by the agent, as the simulation draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mfray.mdp.data import real_steps, step_histograms
from mfray.mdp.macro import draw_state, prompt_fields
from mfray.mdp.tracker import attitude_labels
from mfray.prompts.render import policy_prompt
from mfray.sim.context import derive_seed
from mfray.types import StepRecord


@dataclass(frozen=True)
class LctAgent:
    state: str  # the profile text
    text: str  # the real action
    latent: str  # s_i


@dataclass(frozen=True)
class LctSample:
    event_id: str
    language: str
    topic: str
    step: int
    mean_field: str  # r in force at step t
    m: tuple[float, ...]  # m_t
    signal: str | None
    agents: tuple[LctAgent, ...]
    future: tuple[tuple[float, ...], ...]  # m*_{t+1} .. m*_{t+K'}, K' <= K (fewer at the event's end)

    @property
    def first_of_event(self) -> bool:
        return self.step == 0

    def prompts(self, style: str, agents: Sequence[LctAgent] | None = None):
        """The MF-MDP policy prompt of each agent, exactly as the rollout renders it."""
        return [policy_prompt(style, self.language, self.topic, a.state, mean_field=self.mean_field, signal=self.signal,
                              **prompt_fields(self.m, a.latent, self.language))
                for a in (self.agents if agents is None else agents)]


def run_samples(records: Sequence[StepRecord], k: int, annotator: str, seed: int = 0) -> list[LctSample]:
    """The samples of one all-real mfmdp run: every step with at least one later step. Raises
    ValueError for records of another method or with simulated actions."""
    if not records:
        return []
    head = records[0]
    ordered = real_steps(records)
    m = [tuple(row) for row in step_histograms(ordered)]
    labels = iter(attitude_labels([r.real_text for step in ordered[:-1] for r in step], head.topic, head.language, annotator))
    event_seed = derive_seed(seed, head.event_id)
    out = []
    for t, step in enumerate(ordered[:-1]):
        agents = tuple(LctAgent(r.state_text, r.real_text, label or draw_state(m[t], derive_seed(event_seed, "latent", r.agent_index)))
                       for r, label in zip(step, labels))
        out.append(LctSample(head.event_id, head.language, head.topic, step[0].step, step[0].mean_field, m[t],
                             step[0].signal, agents, tuple(m[t + 1: t + 1 + k])))
    return out


def load_samples(folders: Sequence[str | Path], event_ids: set[str], k: int, annotator: str,
                 seed: int = 0) -> tuple[dict[str, list[LctSample]], list[str]]:
    """({event id: its samples}, event ids with no run) for the events `event_ids`, from the
    datasets `folders` (the first run found of each event)."""
    from mfray.sim.store import published_runs, read_runs

    runs = {}
    for folder in folders:
        for run in published_runs(folder).values():
            if run.meta["event_id"] in event_ids and run.meta["method"] == "mfmdp":
                runs.setdefault(run.meta["event_id"], run)
    found = {run.meta["event_id"]: run_samples(records, k, annotator, seed) for run, records in read_runs(runs.values())}
    return found, sorted(event_ids - set(found))


def lct_streams(event_ids: set[str], settings, workers: int, seed: int = 0) -> tuple[list[list[LctSample]], list[str]]:
    """LCT-Policy's per-worker sample streams for the events `event_ids` (whole events dealt as
    mfray.train.samples.deal deals them) and the problems: events without a run in
    `settings.runs` (LctSettings), named."""
    from mfray.train.samples import deal

    groups, missing = load_samples(settings.runs, event_ids, settings.k, settings.annotator, seed)
    problems = [f"event {e}: no all-real mfmdp run in {', '.join(settings.runs)}; not used for LCT-Policy" for e in missing]
    return deal(groups, workers, seed), problems
