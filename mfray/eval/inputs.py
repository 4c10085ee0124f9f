"""Which runs an evaluation reads: complete runs of the output folder's dataset only
(mfray.sim.store), never pooled across configs, never a stand-in's canned text.

Shared by `mfray evaluate` and the Ray evaluation job so both count exactly the same runs.
"""

from __future__ import annotations

from pathlib import Path

from mfray.llm.standin import STANDIN_PATH
from mfray.sim.checkpoint import refuse_legacy
from mfray.sim.identity import differing_parts
from mfray.sim.store import PublishedRun, published_runs, work_runs

INCOMPLETE_NAME = "incomplete_runs.txt"


def evaluable_runs(folder: str | Path) -> tuple[list[PublishedRun], list[str]]:
    """(complete runs, sorted by name; names of runs not in the dataset) of the output folder.

    Runs in progress (running, killed, failed) and finished runs not yet published are never
    read. Raises FileNotFoundError when no run is complete; ValueError when runs of one method
    were made under different identities (config, model, adapters, mfray version), naming a run
    of each and what differs (pooling them would average different experiments), or when runs
    were made by the stand-in LLM (mfray.llm.standin: canned text, bookkeeping only)."""
    try:
        refuse_legacy(folder)
    except RuntimeError as err:
        raise ValueError(str(err)) from None
    complete = sorted(published_runs(folder).values(), key=lambda r: r.name)
    finished, in_progress = work_runs(folder)
    incomplete = sorted(in_progress + [p.name[: -len(".parquet")] for p in finished])
    if not complete:
        more = f" ({len(incomplete)} incomplete runs: {', '.join(incomplete[:5])})" if incomplete else ""
        raise FileNotFoundError(f"no complete trajectory in {folder}{more}; run mfray simulate --out there")
    standin = [r.name for r in complete if _made_by_standin(r.meta)]
    if standin:
        raise ValueError(f"{len(standin)} runs in {folder} were made by the stand-in LLM (e.g. {standin[0]}): its canned "
                         "text measures orchestration, never fidelity; simulate with a real model to evaluate")
    by_method: dict[str, dict[str, PublishedRun]] = {}
    for run in complete:
        by_method.setdefault(run.method, {}).setdefault(run.meta.get("identity"), run)
    for method, found in sorted(by_method.items()):
        if len(found) > 1:
            a, b = list(found.values())[:2]
            diff = differing_parts(a.meta.get("parts") or {}, b.meta.get("parts") or {})
            raise ValueError(
                f"method {method} has runs made under {len(found)} different configs in {folder}, e.g. {a.name} "
                f"and {b.name} (differ in: {', '.join(diff) or 'identity digest'}); "
                "evaluate each config's runs from its own folder")
    return complete, incomplete


def _made_by_standin(meta: dict) -> bool:
    backend = (meta.get("parts") or {}).get("backend") or {}
    return STANDIN_PATH in (backend.get("weights"), backend.get("model"))


def write_incomplete(names: list[str], out: str | Path) -> Path | None:
    """List the incomplete runs left out of an evaluation in `out`/incomplete_runs.txt (removed
    when there are none, so a stale list never outlives a rerun)."""
    path = Path(out) / INCOMPLETE_NAME
    if not names:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return path
