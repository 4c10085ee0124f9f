"""`mfray train ibtune|sft` / jobs/train_ibtune.py config (SPEC section 7)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mfray.config import StrictModel


class LoraSettings(StrictModel):
    """LoRA shape of every adapter (SPEC: rank 64, alpha 64, all linear layers)."""

    rank: int = Field(64, ge=1)
    alpha: int = Field(64, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


class LctSettings(StrictModel):
    """LCT-Policy, MF-MDP's lookahead training of the policy (SPEC section 6; mfray.mdp.lct).
    Its data are all-real mfmdp runs (sim_start = horizon, e.g. jobs/configs/mdp_transition_data.yaml):
    they hold per step the summariser's r_t over the real actions and the real histograms m*_t."""

    runs: list[str] = Field(default_factory=list, description="output folders of all-real mfmdp runs of the train and "
                            "held-out events (`mfray simulate` datasets)")
    k: int = Field(30, ge=1, description="K, future steps the head predicts (paper 30)")
    instances: int = Field(4, ge=1, description="J, dropout instances of the policy per sample (paper 4; 1 = w/o sampling)")
    beta: float = Field(1.0, ge=0, description="w = softmax_J(-beta V) (project default; the paper gives none)")
    gamma: float = Field(0.9, gt=0, le=1, description="discount of step k: gamma^(k-1) (project default)")
    pred_weight: float = Field(0.5, ge=0, description="weight of the lookahead loss (paper 0.5)")
    text_weight: float = Field(0.5, ge=0, description="weight of the text NLL (paper 0.5)")
    head_width: int = Field(256, ge=1)
    head_dropout: float = Field(0.1, ge=0, lt=1, description="dropout of the head's input (one source of the J instances)")
    head_lr: float = Field(1e-3, gt=0, description="the head's learning rate: it starts from scratch, the adapters "
                           "from the base model (project default; the paper gives none)")
    agents_scored: int | None = Field(None, ge=1, description="agents of each step trained on (a seeded subset; None: all)")
    annotator: str = Field("offline", description="local annotator of the real actions' attitudes (each agent's state s_i)")


class TrainConfig(StrictModel):
    """One training run. Defaults are the SPEC's (the paper's settings for 1.5B models); the
    CPU configs in jobs/configs/ override the learning rate and sizes for a short run."""

    mode: Literal["ibtune", "sft", "lct"] = "ibtune"
    model: str = Field("default", description="'default', a .gguf file or a HF directory")
    train_events: list[str] = Field(min_length=1, description="event files or directories (any supported format)")
    heldout_events: list[str] = Field(default_factory=list, description="scored before and after (policy NLL)")
    out: str = "runs/train"
    lora: LoraSettings = LoraSettings()
    agents_per_step: int = Field(16, ge=1)
    horizon: int = Field(300, ge=2, description="agents of each event used (steps = horizon // agents_per_step)")
    mean_field_states: bool = False  # as RolloutConfig: show each action's author state to the mean field
    prompt_style: Literal["chat", "timeline"] = Field(
        "timeline", description="as RolloutConfig.prompt_style: adapters are trained on the prompts they will "
        "see in simulation, so simulate with the style they were trained with (summary.json records it)")
    summaries: int = Field(4, ge=2, description="J, summaries sampled per step for the IB estimator")
    beta: float = Field(2.0, gt=0)
    summary_max_tokens: int = Field(200, ge=1)
    lr: float | None = Field(None, gt=0, description="default 5e-7 (ibtune) / 1e-6 (sft), the paper's")
    weight_decay: float = Field(0.0, ge=0)
    steps: int = Field(100, ge=1, description="optimizer updates")
    accumulate: int = Field(1, ge=1, description="event-steps per worker per optimizer update")
    checkpoint_every: int = Field(10, ge=1, description="optimizer updates between checkpoints")
    gradient_checkpointing: bool = Field(True, description="recompute activations in backward (memory for compute)")
    seed: int = 0
    workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool = False
    backend: Literal["auto", "torch", "deepspeed"] = Field(
        "auto", description="auto: DeepSpeed ZeRO-2 (bf16) on GPU workers, torch with a gloo all-reduce on CPU")
    zero_stage: Literal[0, 1, 2] = 2
    max_failures: int = Field(1, ge=0, description="worker-group restarts from the last checkpoint")
    heldout_steps: int = Field(4, ge=1, description="steps per held-out event scored for NLL")
    heldout_start: int = Field(48, ge=0, description="first held-out agent scored (after warm-up)")
    lct: LctSettings = LctSettings()

    @model_validator(mode="after")
    def _check(self):
        if self.horizon < 2 * self.agents_per_step:
            raise ValueError(f"horizon ({self.horizon}) must cover at least 2 steps of {self.agents_per_step} agents")
        if self.mode == "lct" and not self.lct.runs:
            raise ValueError("mode lct trains on all-real mfmdp runs: give their folders in lct.runs")
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-7 if self.mode == "ibtune" else 1e-6)  # lct: sft's

    @property
    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "deepspeed" if self.use_gpu else "torch"

    @property
    def adapter_names(self) -> tuple[str, ...]:
        """The adapters this run trains, named as simulation looks them up (RolloutConfig.adapters)."""
        return {"ibtune": ("ib_policy", "ib_mean_field"), "sft": ("sft",), "lct": ("lct_policy",)}[self.mode]

    @property
    def policy_adapter(self) -> str:
        return self.adapter_names[0]
