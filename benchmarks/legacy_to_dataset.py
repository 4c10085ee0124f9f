"""Re-publish a trajectory folder of the one-file-per-run layout (mfray before the Parquet dataset,
`<event>__<method>__s<seed>.parquet`) into a dataset folder that `mfray evaluate` reads. The
records are copied unchanged; a run's identity is kept where its file recorded one, else marked
"legacy". Used to re-evaluate the committed studies made before the dataset:

    .venv/bin/python benchmarks/legacy_to_dataset.py runs/fidelity_adapters runs/fidelity_adapters_ds
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mfray.sim.store import RunFiles, publish
from mfray.sim.trajectory import read_trajectory, run_meta, write_trajectory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="folder of <event>__<method>__s<seed>.parquet files")
    ap.add_argument("new", type=Path, help="output folder (a dataset is written under it)")
    args = ap.parse_args()
    files = sorted(p for p in args.old.glob("*__*__s*.parquet") if not p.name.startswith("."))
    if not files:
        raise SystemExit(f"no <event>__<method>__s<seed>.parquet files in {args.old}")
    for path in files:
        records = read_trajectory(path)
        if not records:
            raise SystemExit(f"{path}: no records")
        head = records[0]
        meta = {"identity": "legacy", "parts": {}, "event_digest": "legacy", **(run_meta(path) or {}),
                "event_id": head.event_id, "method": head.method, "seed": head.seed, "complete": True}
        write_trajectory(records, RunFiles.of(args.new, head.event_id, head.method, head.seed).final, meta)
    print(f"{len(files)} runs from {args.old} published into {args.new} ({len(publish(args.new))} part files)")


if __name__ == "__main__":
    main()
