"""The typed config of f_psi's training job (jobs/train_transition.py, mfray.ray.train_transition)."""

from __future__ import annotations

from pydantic import Field

from mfray.config import StrictModel
from mfray.mdp.transition import TransitionConfig


class TransitionJobConfig(StrictModel):
    """`data`: a dataset folder of all-real mfmdp runs (jobs/configs/mdp_transition_data.yaml makes
    one); `heldout`: event ids never fitted, scored each epoch; `out`: where the model and Ray
    Train's run go; `transition`: f_psi's config (SPEC defaults); `cpus`: the worker's CPUs."""

    data: str = "runs/mdp_transition_data"
    heldout: list[str] = Field(default_factory=list)
    out: str = "runs/mdp_transition"
    seed: int = 0
    cpus: float = Field(1.0, gt=0)
    max_failures: int = Field(1, ge=0)
    transition: TransitionConfig = TransitionConfig(encoder_dim=256)
