"""What made a trajectory: a fingerprint of everything that determines it besides its event
and seed, stored in the trajectory's Parquet metadata.

A rerun skips a finished run only when the fingerprint (and the event's content) are the same;
evaluation refuses to pool runs of one method made under different fingerprints. The parts:
- `rollout`: the whole RolloutConfig, method included;
- `backend`: the model's weights (a content digest) and dtype, or the endpoint's URL and model
  name, plus a content digest of every LoRA adapter the method uses;
- `mfray`: the package version and a digest of the prompt templates (prompts change between
  versions while a working copy is edited).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mfray.sim.config import RolloutConfig
from mfray.sim.methods import method_spec
from mfray.types import Event

_TEMPLATES = Path(__file__).resolve().parents[1] / "prompts" / "templates"


@dataclass(frozen=True)
class RunIdentity:
    """A fingerprint: `digest` (16 hex digits of the sha256 of `parts`) and the parts themselves,
    kept readable so a mismatch can say what differs."""

    digest: str
    parts: dict


def make_identity(rollout: RolloutConfig, backend: dict) -> RunIdentity:
    """The fingerprint of runs made with `rollout` on `backend` (a JSON-able description of the model)."""
    parts = {"rollout": rollout.model_dump(mode="json"), "backend": backend, "mfray": package_identity()}
    return RunIdentity(_digest(parts), parts)


def config_identity(cfg, method: str, use_endpoint: bool) -> RunIdentity:
    """The fingerprint of `method`'s runs under SimulateConfig `cfg` (or a subclass), on its
    `endpoint` when `use_endpoint`, else on the local model (a local engine or a Serve replica)."""
    rollout = cfg.rollout.model_copy(update={"method": method})
    adapters = rollout.adapters()
    backend = _endpoint_backend(cfg.endpoint, adapters) if use_endpoint else _local_backend(cfg.model, adapters)
    if method_spec(method).macro_state:  # MF-MDP: f_psi's weights make the run as much as the LLM's do
        backend["transition"] = _path_digest(rollout.mdp.transition) if rollout.mdp.transition else "persistence"
    return make_identity(rollout, backend)


def _local_backend(model, adapters: tuple[str | None, ...]) -> dict:
    """Backend part for a local engine (or a Serve replica of one) built from ModelConfig `model`:
    the weights' content digest, the dtype, and the digest of each adapter in `adapters`
    (names; None entries are skipped; an adapter the config does not list is recorded as missing)."""
    from mfray.llm.standin import STANDIN_PATH

    named = sorted({a for a in adapters if a is not None})
    if model.path == STANDIN_PATH:  # canned text, no weights: recorded by name so evaluation can refuse it
        return {"weights": STANDIN_PATH, "dtype": model.dtype, "adapters": {a: STANDIN_PATH for a in named}}
    return {
        "weights": _model_digest(model.path),
        "dtype": model.dtype,
        "adapters": {a: (_path_digest(model.adapters[a]) if a in model.adapters else "missing") for a in named},
    }


def _endpoint_backend(endpoint, adapters: tuple[str | None, ...]) -> dict:
    """Backend part for an OpenAI-compatible endpoint: its URL, model and request mode. The
    server's weights cannot be seen from here; adapters are recorded by the names sent."""
    return {"endpoint": endpoint.base_url, "model": endpoint.model, "mode": endpoint.mode,
            "extra_sampling": endpoint.extra_sampling,
            "adapters": sorted({f"{endpoint.adapter_prefix}{a}" for a in adapters if a is not None})}


# event_digest's memo: id(event) -> (event, digest). Holding the event keeps its id from being
# reused; a sweep actor digests the same event for every (method, seed) run of it, and its grid
# rows come event by event, so a few suffice (an event of 15,000 tweets holds tens of MiB).
_DIGESTS: dict[int, tuple[Event, str]] = {}
_DIGESTS_KEPT = 8


def event_digest(event: Event) -> str:
    """16 hex digits of the sha256 of the event's full content (topic, every response, profiles).
    Memoised per event object (the records are frozen), the last 8 events."""
    hit = _DIGESTS.get(id(event))
    if hit is not None and hit[0] is event:
        return hit[1]
    if len(_DIGESTS) >= _DIGESTS_KEPT:
        _DIGESTS.pop(next(iter(_DIGESTS)))
    digest = _event_content_digest(event)
    _DIGESTS[id(event)] = (event, digest)
    return digest


def _event_content_digest(event: Event) -> str:
    blob = json.dumps(_event_dict(event), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _event_dict(event: Event) -> dict:
    """dataclasses.asdict(event) without its deep copies (50x faster on an event of thousands of
    posts; the digest is computed for every run). The records are plain frozen dataclasses, so
    vars() holds exactly their fields."""

    def post(p) -> dict:
        return {**vars(p), "profile": vars(p.profile)}

    return {**vars(event), "topic": post(event.topic), "responses": [post(r) for r in event.responses]}


def same_run(found: dict | None, want: dict) -> bool:
    """True when run metadata `found` (from a file, a checkpoint or a part's footer) was made like
    `want`: the same identity and the same event content."""
    return found is not None and (found.get("identity"), found.get("event_digest")) == (want.get("identity"), want.get("event_digest"))


def differing_parts(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two parts trees (`rollout.horizon`, ...)."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += differing_parts(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}")
    return out


def package_identity() -> dict:
    """mfray's version and the digest of its prompt templates."""
    try:
        version = metadata.version("mfray")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "prompts": _path_digest(str(_TEMPLATES))}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _model_digest(path: str) -> str:
    if path == "default":
        from mfray.llm.models import default_model_file

        return _path_digest(str(default_model_file()))
    return _path_digest(path)


def _path_digest(path: str) -> str:
    """Content digest of a file, or of every file under a folder (relative names and bytes),
    memoised per (path, sizes, modification times) so a large model is hashed once per process."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist (model or adapter path in the config)")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(str(root), stamp)


@functools.lru_cache(maxsize=64)
def _hash_files(root: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    base = Path(root)
    for name, _, _ in stamp:
        p = Path(name)
        h.update(str(p.relative_to(base) if p != base else p.name).encode("utf-8") + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]
