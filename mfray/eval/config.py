"""`mfray evaluate` / jobs/evaluate.py config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mfray.config import EndpointConfig, StrictModel


class EvaluateConfig(StrictModel):
    """Annotate trajectories (real and simulated sides alike) and compute the metrics."""

    trajectories: str = Field(description="a folder of trajectory Parquet files (mfray simulate --out)")
    out: str = "runs/evaluate"
    annotator: Literal["offline", "llm"] = "offline"
    endpoint: EndpointConfig | None = None  # the LLM annotator's server (e.g. gpt-4o-mini)
    annotator_batch: int = Field(8, ge=1, description="actions per LLM annotator call")
    cache: str | None = None  # default: <out>/annotations.<annotator>.jsonl
    eval_start: int = Field(50, ge=0)
    eval_end: int = Field(300, ge=1)
    plot_window: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _check(self):
        if self.eval_end <= self.eval_start:
            raise ValueError(f"eval_end ({self.eval_end}) must be above eval_start ({self.eval_start})")
        if self.annotator == "llm" and self.endpoint is None:
            raise ValueError("annotator 'llm' needs endpoint: {base_url, model, api_key_env}")
        return self
