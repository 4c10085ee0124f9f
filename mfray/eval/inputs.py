"""Which trajectory files an evaluation reads: complete runs only, never pooled across configs.

Shared by `mfray evaluate` and the Ray evaluation job so both count exactly the same runs.
"""

from __future__ import annotations

from pathlib import Path

from mfray.sim.identity import differing_parts
from mfray.sim.trajectory import list_runs, run_meta

INCOMPLETE_NAME = "incomplete_runs.txt"


def evaluable_runs(folder: str | Path) -> tuple[list[Path], list[str]]:
    """(complete trajectory files, names of incomplete runs) in `folder`.

    Checkpoints of killed, failed or running runs are never read. Raises FileNotFoundError when
    no run is complete, and ValueError when runs of one method were made under different
    identities (config, model, adapters, mfray version), naming a file of each and what differs:
    pooling them would average different experiments. Files written before mfray recorded
    identities count as one "unrecorded" identity."""
    complete, incomplete = list_runs(folder)
    if not complete:
        more = f" ({len(incomplete)} incomplete runs: {', '.join(incomplete[:5])})" if incomplete else ""
        raise FileNotFoundError(f"no complete trajectory in {folder}{more}; run mfray simulate --out there")
    by_method: dict[str, dict[str, tuple[Path, dict | None]]] = {}
    for path in complete:
        meta = run_meta(path)
        method = meta["method"] if meta else _method_in_file(path)
        by_method.setdefault(method, {}).setdefault(meta["identity"] if meta else "unrecorded", (path, meta))
    for method, found in sorted(by_method.items()):
        if len(found) > 1:
            (path_a, meta_a), (path_b, meta_b) = list(found.values())[:2]
            diff = differing_parts((meta_a or {}).get("parts") or {}, (meta_b or {}).get("parts") or {})
            raise ValueError(
                f"method {method} has runs made under {len(found)} different configs in {folder}, e.g. {path_a.name} "
                f"and {path_b.name} (differ in: {', '.join(diff) or 'identity recorded on one only'}); "
                "evaluate each config's runs from its own folder")
    return complete, incomplete


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


def _method_in_file(path: Path) -> str:
    """The method of a file without run metadata: its first row's `method` column."""
    import pyarrow.parquet as pq

    column = pq.read_table(path, columns=["method"]).column("method")
    return column[0].as_py() if len(column) else "unknown"
