"""The cluster deployment files are valid for the tools that read them.

- cluster/launcher.yaml: the JSON schema that ships with Ray (ray/autoscaler/ray-schema.json) and
  Ray's own validate_config after it fills in defaults, as `ray up` does.
- cluster/kuberay/*.yaml: the openAPIV3Schema of the KubeRay CRD for the manifest's kind and
  apiVersion, from ../shared/schemas/kuberay beside the repository root (found like the data, see
  tests/conftest.py). The API server treats these schemas as structural: an object schema with
  `properties` and no `additionalProperties` / `x-kubernetes-preserve-unknown-fields` admits no
  other field (dropped silently, or refused under `kubectl --validate=strict`), so `strict_schema`
  makes such objects closed and a misspelled field fails here. `x-kubernetes-int-or-string` comes
  with an anyOf of integer and string, which jsonschema applies as is; `x-kubernetes-list-type`
  map / set uniqueness is checked by `list_problems`; CEL rules (`x-kubernetes-validations`)
  cannot be evaluated here, so `cel_fields` asserts the manifests set no field that has one.
- Plus what the project needs of them: token auth, no public dashboard, resources, GPUs, the
  entrypoints' --set overrides valid for the job's config, the Serve apps valid.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
import os
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import REPO_ROOT

CLUSTER = REPO_ROOT / "cluster"
MANIFESTS = sorted((CLUSTER / "kuberay").glob("*.yaml"))
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}


def crd_dir() -> Path:
    return Path(os.environ.get("MFRAY_SHARED", REPO_ROOT.parent / "shared")).resolve() / "schemas" / "kuberay"


# A name that holds a secret: KEY, TOKEN, SECRET, PASSWORD as a word of an env var name.
SECRET_NAME = re.compile(r"(?i)(^|_)(api_?key|key|token|secret|password)(_|$)")


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _crd(path: Path) -> dict:
    # The CRD files are about 1 MB each: parse once, with libyaml where available.
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# -- schema handling ------------------------------------------------------------------------------


def crd_schema(kind: str, api_version: str) -> dict:
    """The openAPIV3Schema of `kind` at the version named in `api_version` (group/version)."""
    path = crd_dir() / CRD_FILES[kind]
    if not path.is_file():
        pytest.fail(f"KubeRay CRD schema not found at {path}; set MFRAY_SHARED to the shared folder "
                    "(the one holding schemas/kuberay/)", pytrace=False)
    crd = _crd(path)
    group, _, version = api_version.partition("/")
    assert group == crd["spec"]["group"], f"apiVersion {api_version}: the CRD's group is {crd['spec']['group']}"
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            assert v["served"], f"{kind} {version} is not served by this CRD"
            return v["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{kind} has no version {version}")


def strict_schema(schema):
    """A copy of `schema` in which every object schema with `properties`, no
    `additionalProperties` and no `x-kubernetes-preserve-unknown-fields` refuses other keys."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _children(instance, schema):
    """(key, child instance, child schema) for the fields and items that `schema` describes."""
    if isinstance(instance, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for k, v in instance.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield k, v, sub
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(instance):
            yield i, v, schema["items"]


def list_problems(instance, schema, path="") -> list[str]:
    """Duplicate entries of `x-kubernetes-list-type: map` lists (by their list-map-keys, a key's
    schema default standing in when it is absent) and of `set` lists."""
    problems = []
    kind = schema.get("x-kubernetes-list-type")
    if isinstance(instance, list) and kind in ("map", "set"):
        if kind == "map":
            item_props = schema["items"].get("properties", {})
            keys = [tuple(it.get(k, item_props.get(k, {}).get("default")) for k in schema["x-kubernetes-list-map-keys"])
                    for it in instance]
        else:
            keys = [json.dumps(it, sort_keys=True) for it in instance]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            problems.append(f"{path}: duplicate {kind} entries {sorted(map(str, dupes))}")
    for key, child, sub in _children(instance, schema):
        problems += list_problems(child, sub, f"{path}.{key}")
    return problems


def cel_fields(instance, schema, path="") -> list[str]:
    """Paths the manifest sets whose schema carries CEL rules (x-kubernetes-validations)."""
    found = [path] if "x-kubernetes-validations" in schema else []
    for key, child, sub in _children(instance, schema):
        found += cel_fields(child, sub, f"{path}.{key}")
    return found


def crd_problems(manifest: dict) -> list[str]:
    """Every problem of one manifest against its CRD: strict schema errors, list uniqueness,
    fields under CEL rules; and metadata.name a DNS-1123 subdomain."""
    schema = crd_schema(manifest["kind"], manifest["apiVersion"])
    validator = jsonschema.Draft4Validator(strict_schema(schema))
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    problems += list_problems(manifest, schema)
    problems += [f"{p}: has CEL rules that this test cannot evaluate" for p in cel_fields(manifest, schema)]
    name = manifest.get("metadata", {}).get("name", "")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
        problems.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    return problems


def cluster_specs(manifest: dict) -> list[dict]:
    """The RayCluster specs inside a manifest (its own, a RayJob's or a RayService's)."""
    spec = manifest["spec"]
    return [{"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"),
             "RayService": spec.get("rayClusterConfig")}[manifest["kind"]]]


def pod_specs(cluster: dict) -> list[tuple[str, dict]]:
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    return [(name, g["template"]["spec"]) for name, g in groups]


# -- the schema handling itself ----------------------------------------------------------------


def test_strict_schema_closes_objects_with_properties_only():
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}},
                                               "m": {"type": "object", "additionalProperties": {"type": "string"}},
                                               "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                                        "properties": {}}}}
    v = jsonschema.Draft4Validator(strict_schema(schema))
    assert v.is_valid({"a": {"b": 1}, "m": {"any": "x"}, "free": {"anything": 1}})
    assert not v.is_valid({"a": {"b": 1, "c": 2}})
    assert not v.is_valid({"z": 1})
    assert jsonschema.Draft4Validator(schema).is_valid({"a": {"b": 1, "c": 2}})  # what the raw schema lets through


def test_list_problems_finds_duplicate_map_keys_with_defaults():
    schema = {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
              "items": {"type": "object", "properties": {"port": {"type": "integer"},
                                                         "protocol": {"type": "string", "default": "TCP"}}}}
    assert list_problems([{"port": 1}, {"port": 1, "protocol": "UDP"}], schema) == []
    assert len(list_problems([{"port": 1}, {"port": 1, "protocol": "TCP"}], schema)) == 1


# -- the KubeRay manifests -------------------------------------------------------------------------


def test_the_manifests_are_there():
    assert {load(p)["kind"] for p in MANIFESTS} == {"RayCluster", "RayJob", "RayService"}
    assert sum(load(p)["kind"] == "RayJob" for p in MANIFESTS) == 2


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_for_its_crd(path):
    assert crd_problems(load(path)) == []


@pytest.mark.parametrize("broken, expected", [
    (lambda m: m["spec"]["headGroupSpec"].update(serviceTyp="ClusterIP"), "serviceTyp"),
    (lambda m: m["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].update(resource={}), "resource"),
    (lambda m: m["spec"]["workerGroupSpecs"][0].update(replicas="two"), "'two' is not of type 'integer'"),
    (lambda m: m["spec"]["workerGroupSpecs"][0].pop("groupName"), "'groupName' is a required property"),
    (lambda m: m["spec"].update(authOptions={"mode": "tokens"}), "'tokens' is not one of"),
    (lambda m: m["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"].append(
        {"containerPort": 8265, "name": "again"}), "duplicate map entries"),
])
def test_a_broken_manifest_is_refused(broken, expected):
    manifest = copy.deepcopy(load(CLUSTER / "kuberay" / "raycluster.yaml"))
    broken(manifest)
    problems = crd_problems(manifest)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_security_and_resources(path):
    manifest = load(path)
    text = path.read_text()
    assert not re.search(r"(?i)(api[_-]?key|password|secret|token)\s*:\s*['\"]?[A-Za-z0-9_\-]{16,}", text), "a literal secret?"
    for cluster in cluster_specs(manifest):
        assert cluster["authOptions"] == {"mode": "token"}
        head = cluster["headGroupSpec"]
        assert head["serviceType"] == "ClusterIP" and head["enableIngress"] is False
        for group, pod in pod_specs(cluster):
            for c in pod["containers"]:
                for env in c.get("env", []):  # secrets come from Secrets, never as literal values
                    assert "value" not in env or not SECRET_NAME.search(env["name"]), env
                res = c["resources"]
                assert {"cpu", "memory"} <= set(res["requests"]) and res["requests"] == res["limits"], (group, res)
                if "gpu" in group:
                    assert res["limits"].get("nvidia.com/gpu") == "1", group


def test_runtime_envs_hold_no_secrets():
    for path in MANIFESTS:
        env = yaml.safe_load(load(path)["spec"].get("runtimeEnvYAML", "{}")) or {}
        names = set(env.get("env_vars", {}))
        assert not {n for n in names if SECRET_NAME.search(n)}, path.name


JOB_CONFIGS = {"simulate_sweep.py": ("mfray.ray.sweep", "SweepConfig"), "train_ibtune.py": ("mfray.train.config", "TrainConfig")}


@pytest.mark.parametrize("path", [p for p in MANIFESTS if load(p)["kind"] == "RayJob"], ids=lambda p: p.name)
def test_rayjob_entrypoint_loads_its_config(path):
    from mfray.config import load_config

    args = shlex.split(load(path)["spec"]["entrypoint"])
    script = Path(args[1]).name
    assert args[0] == "python" and (REPO_ROOT / "jobs" / script).is_file()
    config = REPO_ROOT / "jobs" / "configs" / Path(args[args.index("--config") + 1]).name
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    module, cls = JOB_CONFIGS[script]
    cfg = load_config(getattr(importlib.import_module(module), cls), str(config), overrides)
    assert str(cfg.out).startswith("/home/ray/shared/")  # outputs on the shared volume, not a pod's disk
    if cls == "TrainConfig":
        workers = load(path)["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        assert cfg.use_gpu and sum(g["replicas"] for g in workers if "gpu" in g["groupName"]) == cfg.workers


def test_rayservice_serve_config():
    from mfray.ray.serve_configs import validate_serve_config

    service = load(CLUSTER / "kuberay" / "rayservice.yaml")
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    apps = {a["name"]: a for a in serve["applications"]}
    for source in ("vllm.yaml", "endpoint.yaml"):  # the same apps as serve_configs/, routes aside
        app = next(a for a in load(REPO_ROOT / "serve_configs" / source)["applications"] if a["name"] in apps)
        same = ("import_path",) if source == "endpoint.yaml" else ("import_path", "args")
        assert {k: apps[app["name"]][k] for k in same} == {k: app[k] for k in same}, source
    endpoint_args = apps["mfray-endpoint"]["args"]
    from mfray.ray.event_actor import BackendConfig
    from mfray.ray.sim_endpoint import SimEndpointReplica

    assert set(endpoint_args) <= set(inspect.signature(SimEndpointReplica.__init__).parameters)
    BackendConfig.model_validate(endpoint_args["backend"])  # raises on a bad backend
    assert endpoint_args["token_env"] and endpoint_args["store"].startswith("/home/ray/shared/")
    assert endpoint_args["backend"]["endpoint"]["base_url"] == "http://mfray-serve-serve-svc:8000/vllm/v1"
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mfray_rayservice_{os.getpid()}.yaml"
    path.write_text(yaml.safe_dump(serve))
    try:
        assert validate_serve_config(path) == []
    finally:
        path.unlink()


# -- the cluster launcher -------------------------------------------------------------------------


def launcher_problems(config: dict) -> list[str]:
    """Errors of a cluster launcher config against Ray's shipped schema."""
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(config)]


def test_launcher_config_is_valid_for_ray():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(CLUSTER / "launcher.yaml")
    assert launcher_problems(config) == []
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs; raises on a problem


def test_launcher_config_with_a_typo_is_refused():
    config = load(CLUSTER / "launcher.yaml")
    config["setup_comands"] = config.pop("setup_commands")
    config["available_node_types"]["vllm_gpu"]["resources"]["GPU"] = "one"
    problems = launcher_problems(config)
    assert any("setup_comands" in p for p in problems) and any("'one' is not of type 'integer'" in p for p in problems)


def test_launcher_node_types_and_security():
    config = load(CLUSTER / "launcher.yaml")
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"].get("GPU", 0) == 0
    assert types["vllm_gpu"]["resources"]["GPU"] == 1 and types["train_gpu"]["resources"]["GPU"] >= 1
    train = load(REPO_ROOT / "jobs" / "configs" / "train_ibtune_gpu.yaml")
    assert types["train_gpu"]["resources"]["GPU"] * types["train_gpu"]["max_workers"] >= train["workers"]
    assert any("make venv" in c for c in config["setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host 127.0.0.1" in head
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd, cmd
