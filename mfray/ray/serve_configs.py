"""Checks for the YAML files under serve_configs/ that need no cluster, no GPU and no vLLM.

Three kinds of file, told apart by content:
- a Serve config of mfray's LLMServer (`import_path: mfray.ray.serve_llm:app_builder`): the
  structure by Serve's own schema, the import path resolved, `args` against the LLMServer
  constructor's signature, `deployments` naming only LLMServer;
- a Serve config of Ray Serve LLM (`import_path: ray.serve.llm:build_openai_app`): the structure
  by Serve's schema and `args` against a declared copy of the ray.serve.llm config classes
  (`import ray.serve.llm` fails without vLLM), plus mfray's own requirements: prefix caching on,
  the roles as LoRA adapters (lora_config + enable_lora, max_loras >= 2);
- an mfray EndpointConfig (an OpenAI-compatible base URL with `api_key_env`).

`python -m mfray.ray.serve_configs FILE...` prints the problems and exits non-zero if any.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

MFRAY_BUILDER = "mfray.ray.serve_llm:app_builder"
# Builders of ray.serve.llm (checked against the schema below, never imported: they need vLLM).
RAY_LLM_BUILDERS = {"ray.serve.llm:build_openai_app", "ray.serve.llm.build_openai_app"}

# -- a declared copy of the ray.serve.llm config classes (Ray 2.60; fields, types, defaults) -----
# Source: ray/llm/_internal/serve/core/configs/llm_config.py (LLMConfig, LoraConfig,
# ModelLoadingConfig) and core/ingress/builder.py (LLMServingArgs); all forbid unknown keys.
# tests/unit/test_serve_configs.py compares these field names with the real classes when they
# can be imported, so a Ray upgrade that changes them fails a test instead of passing silently.

# LLMConfig.deployment_config is passed to @serve.deployment; its documented fields:
LLM_DEPLOYMENT_CONFIG_KEYS = frozenset({
    "name", "num_replicas", "ray_actor_options", "max_ongoing_requests", "autoscaling_config",
    "max_queued_requests", "user_config", "health_check_period_s", "health_check_timeout_s",
    "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s", "logging_config", "request_router_config",
})
_REMOTE_PREFIXES = ("s3://", "gs://", "abfss://", "azure://")


class _Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelLoadingConfigSchema(_Forbid):
    model_id: str
    model_source: Union[str, dict, None] = None
    tokenizer_source: str | None = None


class LoraConfigSchema(_Forbid):
    dynamic_lora_loading_path: str | None = None
    max_num_adapters_per_replica: PositiveInt = 16
    download_timeout_s: float | None = 30.0
    max_download_tries: int = 3

    @field_validator("dynamic_lora_loading_path")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_REMOTE_PREFIXES):
            raise ValueError(f"must be cloud storage ({', '.join(_REMOTE_PREFIXES)}), got {value!r}")
        return value


class LLMConfigSchema(_Forbid):
    runtime_env: dict | None = None
    model_loading_config: ModelLoadingConfigSchema
    llm_engine: Literal["vLLM"] = "vLLM"
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    accelerator_type: str | None = None
    accelerator_config: dict | None = None
    placement_group_config: dict | None = None
    lora_config: LoraConfigSchema | None = None
    deployment_config: dict[str, Any] = Field(default_factory=dict)
    server_cls: str | None = None
    experimental_configs: dict[str, Any] = Field(default_factory=dict)
    log_engine_metrics: bool | None = True
    callback_config: dict | None = None

    @field_validator("deployment_config")
    @classmethod
    def _deployment_keys(cls, value: dict) -> dict:
        unknown = sorted(set(value) - LLM_DEPLOYMENT_CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unsupported keys {unknown}; supported: {sorted(LLM_DEPLOYMENT_CONFIG_KEYS)}")
        if "autoscaling_config" in value and "num_replicas" in value:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        if isinstance(value.get("autoscaling_config"), dict):
            from ray.serve.config import AutoscalingConfig

            AutoscalingConfig.model_validate(value["autoscaling_config"])
        return value


class LLMServingArgsSchema(_Forbid):
    # Each item: an LLMConfig mapping (checked one by one, see _check_ray_llm_app) or the path of
    # an LLMConfig YAML file on the cluster.
    llm_configs: list[Union[dict, str]] = Field(min_length=1)
    ingress_cls_config: dict | None = None
    ingress_deployment_config: dict[str, Any] = Field(default_factory=dict)


# -- the checks ---------------------------------------------------------------------------------


def _pydantic_problems(err: ValidationError, prefix: str) -> list[str]:
    out = []
    for e in err.errors():
        where = prefix
        for part in e["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        where = where or "<root>"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        out.append(f"{where}: {e['msg']}{shown}")
    return out


def _resolve(import_path: str) -> Any:
    module, _, attr = import_path.partition(":") if ":" in import_path else import_path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _check_mfray_app(app: dict, where: str) -> list[str]:
    from mfray.ray.serve_llm import DEPLOYMENT_NAME, check_server_args

    problems = [f"{where}.{p}" for p in check_server_args(app.get("args") or {})]
    for j, dep in enumerate(app.get("deployments") or []):
        if dep.get("name") != DEPLOYMENT_NAME:
            problems.append(f"{where}.deployments[{j}].name: {dep.get('name')!r} is not a deployment of this app "
                            f"(it has one: {DEPLOYMENT_NAME!r})")
    return problems


def _check_ray_llm_app(app: dict, where: str) -> list[str]:
    args = app.get("args")
    if not isinstance(args, dict):
        return [f"{where}.args: must hold llm_configs (a list of LLMConfig mappings)"]
    try:
        parsed = LLMServingArgsSchema.model_validate(args)
    except ValidationError as err:
        return _pydantic_problems(err, f"{where}.args")
    problems = []
    for k, item in enumerate(parsed.llm_configs):
        at = f"{where}.args.llm_configs[{k}]"
        if isinstance(item, str):
            continue  # a path to an LLMConfig YAML on the cluster: not readable from here
        try:
            cfg = LLMConfigSchema.model_validate(item)
        except ValidationError as err:
            problems += _pydantic_problems(err, at)
            continue
        kw = cfg.engine_kwargs
        if kw.get("enable_prefix_caching") is not True:
            problems.append(f"{at}.engine_kwargs.enable_prefix_caching: must be true (mfray's prompts share "
                            "topic and mean-field prefixes)")
        if cfg.lora_config is None:
            problems.append(f"{at}.lora_config: missing; the policy and mean-field roles are LoRA adapters of the base")
        else:
            if kw.get("enable_lora") is not True:
                problems.append(f"{at}.engine_kwargs.enable_lora: must be true when lora_config is set")
            if not isinstance(kw.get("max_loras", 1), int) or kw.get("max_loras", 1) < 2:
                problems.append(f"{at}.engine_kwargs.max_loras: must be >= 2 so both roles' adapters fit in one "
                                f"batch (got {kw.get('max_loras', 1)!r}, vLLM's default is 1)")
            if cfg.lora_config.dynamic_lora_loading_path is None:
                problems.append(f"{at}.lora_config.dynamic_lora_loading_path: missing; where the adapters are stored")
    return problems


def _keys(model: type[BaseModel]) -> set[str]:
    return {n for name, f in model.model_fields.items() for n in (name, f.alias) if n}


def _unknown_keys(data: dict) -> list[str]:
    """Serve's schema ignores unknown keys (a typo such as `max_ongoing_request` would be dropped
    silently); here they are problems, with the known keys listed."""
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    def check(node: Any, model: type[BaseModel], where: str) -> list[str]:
        if not isinstance(node, dict):
            return []
        known = _keys(model)
        return [f"{where}{'.' if where else ''}{k}: unknown key; known: {', '.join(sorted(known))}"
                for k in node if k not in known]

    problems = check(data, ServeDeploySchema, "") + check(data.get("http_options"), HTTPOptionsSchema, "http_options")
    for i, app in enumerate(data.get("applications") or []):
        problems += check(app, ServeApplicationSchema, f"applications[{i}]")
        for j, dep in enumerate((app.get("deployments") or []) if isinstance(app, dict) else []):
            at = f"applications[{i}].deployments[{j}]"
            problems += check(dep, DeploymentSchema, at)
            if isinstance(dep, dict):
                problems += check(dep.get("ray_actor_options"), RayActorOptionsSchema, f"{at}.ray_actor_options")
    return problems


def _check_serve(data: dict) -> list[str]:
    from ray.serve.schema import ServeDeploySchema

    problems = _unknown_keys(data)
    try:
        ServeDeploySchema.model_validate(data)
    except ValidationError as err:
        problems += _pydantic_problems(err, "")
    apps = data["applications"] if isinstance(data["applications"], list) else []
    for i, app in enumerate(apps):
        where = f"applications[{i}]"
        path = app.get("import_path") if isinstance(app, dict) else None
        if not isinstance(path, str):
            continue  # reported by Serve's schema above
        if path in RAY_LLM_BUILDERS:
            problems += _check_ray_llm_app(app, where)
            continue
        try:
            target = _resolve(path)
        except Exception as err:  # noqa: BLE001 - any import failure is the problem to report
            problems.append(f"{where}.import_path: cannot import {path!r}: {type(err).__name__}: {err}")
            continue
        if path == MFRAY_BUILDER or getattr(target, "__module__", "") == "mfray.ray.serve_llm":
            problems += _check_mfray_app(app, where)
    return problems


def _check_endpoint(data: dict) -> list[str]:
    from mfray.config import EndpointConfig

    try:
        cfg = EndpointConfig.model_validate(data)
    except ValidationError as err:
        return _pydantic_problems(err, "")
    problems = []
    if not cfg.base_url.startswith(("http://", "https://")):
        problems.append(f"base_url: must start with http:// or https:// (got {cfg.base_url!r})")
    elif not cfg.base_url.rstrip("/").endswith("/v1"):
        problems.append(f"base_url: OpenAI-compatible servers are addressed at .../v1 (got {cfg.base_url!r})")
    if not cfg.api_key_env.replace("_", "").isalnum():
        problems.append(f"api_key_env: must name an environment variable, not hold a key (got {cfg.api_key_env[:4]!r}...)")
    return problems


def validate_serve_config(path: str | Path) -> list[str]:
    """Every problem found in one file under serve_configs/, each naming its location; empty
    when the file is valid. Reads the file; imports only mfray and Ray's config schemas."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        return [f"cannot read: {err}"]
    if not isinstance(data, dict):
        return [f"top level must be a mapping, got {type(data).__name__}"]
    if "applications" in data:
        return _check_serve(data)
    if "base_url" in data:
        return _check_endpoint(data)
    return ["neither a Serve config (no 'applications') nor an mfray endpoint config (no 'base_url')"]


def main(argv: list[str] | None = None) -> int:
    """Check the files given (default: serve_configs/*.yaml); print problems; 1 if any."""
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or sorted(Path("serve_configs").glob("*.yaml"))
    bad = 0
    for path in paths:
        problems = validate_serve_config(path)
        bad += bool(problems)
        print(f"{path}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        for p in problems:
            print(f"  {p}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
