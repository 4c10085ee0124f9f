"""Every YAML under serve_configs/ validates; broken copies give problems that name the bad key.

No cluster is started: the Serve configs are checked by Serve's own schema plus mfray's checks,
the LLMServer args against its constructor, and the vLLM config against a declared copy of the
ray.serve.llm classes (ray.serve.llm cannot be imported without vLLM). Where Ray's internal
LLMConfig class does import, the declared copy is compared with it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import pytest
import yaml

from mfray.ray.serve_configs import (
    LLMConfigSchema,
    LLMServingArgsSchema,
    LoraConfigSchema,
    ModelLoadingConfigSchema,
    validate_serve_config,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "serve_configs").glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "serve_configs" / name).read_text(encoding="utf-8"))


def test_the_three_configs_are_there():
    assert {p.name for p in CONFIGS} >= {"local-cpu.yaml", "vllm.yaml", "external.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_serve_config_validates(path):
    assert validate_serve_config(path) == []


def _app(d: dict) -> dict:
    return d["applications"][0]


def _llm(d: dict) -> dict:
    return _app(d)["args"]["llm_configs"][0]


def _set(path: str, value) -> Callable[[dict], None]:
    """A mutation setting a dotted path (list indices as numbers) to `value`; None deletes."""
    def apply(d: dict) -> None:
        *parents, last = path.split(".")
        node = d
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return apply


BROKEN = [
    # (file, mutation, fragments that must all appear in one problem)
    ("local-cpu.yaml", _set("applications.0.args.max_bach", 8), ["applications[0].args.max_bach", "did you mean 'max_batch'"]),
    ("local-cpu.yaml", _set("applications.0.args.max_batch", 0), ["applications[0].args.max_batch", "greater than or equal to 1"]),
    ("local-cpu.yaml", _set("applications.0.args.batch_wait_s", "fast"), ["args.batch_wait_s", "'fast'"]),
    ("local-cpu.yaml", _set("applications.0.args.dtype", "fp8"), ["args.dtype", "'fp8'"]),
    ("local-cpu.yaml", _set("applications.0.args.adapters", ["ib_policy"]), ["args.adapters"]),
    ("local-cpu.yaml", _set("applications.0.import_path", "mfray.ray.serve_llm:nope"), ["import_path", "cannot import"]),
    ("local-cpu.yaml", _set("applications.0.deployments.0.max_ongoing_request", 4), ["deployments[0].max_ongoing_request", "unknown key"]),
    ("local-cpu.yaml", _set("applications.0.deployments.0.name", "Server"), ["deployments[0].name", "'LLMServer'"]),
    ("local-cpu.yaml", _set("applications.0.deployments.0.backpressure_config", {"status_code": 418}), ["status_code"]),
    ("local-cpu.yaml", _set("http_options.hots", "0.0.0.0"), ["http_options.hots", "unknown key"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.engine_kwargs.enable_prefix_caching", False), ["enable_prefix_caching", "must be true"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.engine_kwargs.max_loras", 1), ["max_loras", ">= 2"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.engine_kwargs.enable_lora", None), ["enable_lora"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.lora_config", None), ["lora_config: missing"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.lora_config.dynamic_lora_loading_path", "/data/adapters"), ["dynamic_lora_loading_path", "cloud storage"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.model_loading_config.model_id", None), ["model_loading_config.model_id", "required"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.lora_configs", {}), ["llm_configs[0].lora_configs", "Extra inputs"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.deployment_config.backpressure_config", {}), ["deployment_config", "backpressure_config"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs.0.deployment_config.autoscaling_config.min_replicas", -1), ["deployment_config"]),
    ("vllm.yaml", _set("applications.0.args.llm_configs", []), ["llm_configs", "at least 1"]),
    ("external.yaml", _set("api_key", "sk-secret"), ["api_key", "Extra inputs"]),
    ("external.yaml", _set("base_url", "http://127.0.0.1:8000"), ["base_url", "/v1"]),
    ("external.yaml", _set("max_concurrency", 0), ["max_concurrency"]),
]


@pytest.mark.parametrize("name, mutate, fragments", BROKEN, ids=[f"{b[0]}:{'/'.join(b[2][:1])}" for b in BROKEN])
def test_broken_copy_names_the_problem(tmp_path, name, mutate, fragments):
    data = copy.deepcopy(load(name))
    mutate(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    problems = validate_serve_config(path)
    assert any(all(f in p for f in fragments) for p in problems), problems


def test_unreadable_and_unknown_kinds(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    (tmp_path / "other.yaml").write_text("foo: 1\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("a: [\n", encoding="utf-8")
    assert "mapping" in validate_serve_config(tmp_path / "list.yaml")[0]
    assert "neither a Serve config" in validate_serve_config(tmp_path / "other.yaml")[0]
    assert "cannot read" in validate_serve_config(tmp_path / "bad.yaml")[0]
    assert "cannot read" in validate_serve_config(tmp_path / "missing.yaml")[0]


def test_local_cpu_args_build_the_application():
    """The builder `serve run` calls accepts the file's args (binding needs no running Ray) and
    refuses bad ones with every problem listed."""
    from ray.serve import Application

    from mfray.ray.serve_llm import app_builder

    assert isinstance(app_builder(_app(load("local-cpu.yaml"))["args"]), Application)
    with pytest.raises(ValueError) as err:
        app_builder({"max_batch": 0, "modle_path": "x"})
    assert "args.max_batch" in str(err.value) and "args.modle_path" in str(err.value)


def test_cli_exit_status(tmp_path, capsys):
    from mfray.ray.serve_configs import main

    assert main([str(p) for p in CONFIGS]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_url: ftp://x\nmodel: m\n", encoding="utf-8")
    assert main([str(bad)]) == 1
    assert "base_url" in capsys.readouterr().out


# -- the declared ray.serve.llm schema against the real classes (Ray's internal module) -------


def _real_llm_config_classes():
    # Ray's internal module: imports without vLLM in Ray 2.60 (ray.serve.llm itself does not).
    # Ray is a declared dependency, so a failed import is a broken install or a moved module: a
    # failure, not a skip (a skip would silently stop checking the declared schema).
    try:
        from ray.llm._internal.serve.core.configs import llm_config
    except Exception as err:  # noqa: BLE001
        pytest.fail(f"Ray's LLMConfig classes (ray.llm._internal.serve.core.configs.llm_config) do not import: "
                    f"{type(err).__name__}: {err}; update the import to the installed Ray", pytrace=False)
    return llm_config


def test_declared_schema_matches_ray_llm_config_fields():
    real = _real_llm_config_classes()
    pairs = [
        (LLMConfigSchema, real.LLMConfig),
        (LoraConfigSchema, real.LoraConfig),
        (ModelLoadingConfigSchema, real.ModelLoadingConfig),
    ]
    for declared, actual in pairs:
        assert set(declared.model_fields) == set(actual.model_fields), actual.__name__
        assert actual.model_config.get("extra") == "forbid"  # unknown keys are errors there too
    assert set(LLMServingArgsSchema.model_fields) == {"llm_configs", "ingress_cls_config", "ingress_deployment_config"}


def test_vllm_yaml_passes_ray_llm_config_itself():
    real = _real_llm_config_classes()
    for cfg in _app(load("vllm.yaml"))["args"]["llm_configs"]:
        parsed = real.LLMConfig.model_validate(cfg)
        assert parsed.engine_kwargs["enable_prefix_caching"] is True
        assert parsed.lora_config.max_num_adapters_per_replica >= 2
