"""`mfray evaluate` / jobs/evaluate.py config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mfray.config import EndpointConfig, StrictModel
from mfray.eval.evaluate import DEFAULT_MAX_FAILURE_RATE


class EvaluateConfig(StrictModel):
    """Annotate trajectories (real and simulated sides alike) and compute the metrics."""

    trajectories: str = Field(description="a simulation output folder (mfray simulate --out, a sweep's out)")
    out: str = "runs/evaluate"
    # hybrid (the default, chosen on the development sets' events): the offline rules with three
    # dimensions from a model fitted at build time on the gold file and the development sets;
    # offline: the rules alone; learned: the model alone (mfray/eval/annotators.py); llm: any
    # OpenAI-compatible endpoint.
    annotator: Literal["offline", "learned", "hybrid", "llm"] = "hybrid"
    endpoint: EndpointConfig | None = None  # the LLM annotator's server (e.g. gpt-4o-mini)
    annotator_batch: int = Field(8, ge=1, description="actions per LLM annotator call")
    cache: str | None = None  # default: <out>/annotations.<annotator>.jsonl
    eval_start: int = Field(50, ge=0)
    eval_end: int = Field(300, ge=1)
    plot_window: int = Field(16, ge=1)
    max_failure_rate: float = Field(
        DEFAULT_MAX_FAILURE_RATE, ge=0, le=1, description="the report flags (⚠) methods whose share of failed "
        "generations among the simulated evaluated agents is above this: their metrics stand on fewer agents")
    nll_model: str | None = Field(
        "default", description="policy model scoring the NLL of real actions ('default', a .gguf file or a HF "
        "directory, as in `mfray serve --model`); null turns NLL off")
    realism: bool = Field(True, description="write realism.md/.csv (mfray.eval.realism): per method a real-vs-"
                          "simulated discriminator AUC over events, the share of descriptive/empty/failed posts and "
                          "mean-field checks; their AUC and descriptive share also go into the KL table")
    realism_seed: int = Field(0, description="seeds the discriminator's per-event down-sampling and its model")
    realism_folds: int = Field(5, ge=2, description="event-grouped folds of the discriminator (fewer when there "
                               "are fewer events)")
    noise_seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4], description="random splits of each event's real posts into two "
        "halves for the noise floor of the report (mfray.eval.noise.evaluation_floor: noise_floor.csv and the "
        "'Annotator and noise floor' section of summary.md); the floor is averaged over them")
    nll_adapters: dict[str, str] = Field(
        default_factory=dict, description="method -> LoRA directory: that method's actions are scored under "
        "base model + adapter (e.g. sft: runs/adapters/sft); other methods under the base model")

    @model_validator(mode="after")
    def _check(self):
        if self.eval_end <= self.eval_start:
            raise ValueError(f"eval_end ({self.eval_end}) must be above eval_start ({self.eval_start})")
        if self.annotator == "llm" and self.endpoint is None:
            raise ValueError("annotator 'llm' needs endpoint: {base_url, model, api_key_env}")
        if not self.noise_seeds:
            raise ValueError("noise_seeds is empty: the noise floor needs at least one split seed, e.g. [0, 1, 2, 3, 4]")
        if len(set(self.noise_seeds)) != len(self.noise_seeds):
            raise ValueError(f"noise_seeds {self.noise_seeds} repeats a seed: a repeated split adds no information")
        if self.nll_adapters and self.nll_model is None:
            raise ValueError(f"nll_adapters {sorted(self.nll_adapters)} given but nll_model is null (NLL off)")
        return self
