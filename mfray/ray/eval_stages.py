"""Evaluation as Ray Data stages: explode trajectories into texts, annotate them in an actor
pool (`map_batches`), compute metrics per trajectory (`groupby().map_groups`).

Each stage declares the columns it reads; the work itself is the same pure code the single
process path runs (mfray.eval.evaluate), so both give identical numbers.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd

from mfray.eval.annotate import Annotation, AnnotationItem
from mfray.eval.config import EvaluateConfig
from mfray.eval.evaluate import EvalRange, evaluated, trajectory_metrics
from mfray.eval.labels import DIMENSIONS
from mfray.sim.trajectory import table_to_records

TRAJECTORY_COLUMNS = ("event_id", "method", "seed", "language", "topic", "step", "agent_index",
                      "real_text", "simulated_text", "failed", "warmup")
TEXT_COLUMNS = ("event_id", "method", "seed", "step", "agent_index", "side", "text", "topic", "language")
LABEL_COLUMNS = tuple(f"label_{d}" for d in DIMENSIONS)


def explode_sides(batch: pd.DataFrame, eval_start: int, eval_end: int) -> pd.DataFrame:
    """Reads TRAJECTORY_COLUMNS; returns TEXT_COLUMNS: one row per evaluated agent and side
    ("real", "sim"); a failed generation's sim row has text None (it stays, to be counted)."""
    import pyarrow as pa

    from mfray.sim.trajectory import SCHEMA

    full = {name: batch[name] if name in batch else None for name in SCHEMA.names}
    table = pa.Table.from_pandas(pd.DataFrame(full), schema=SCHEMA, preserve_index=False)
    rows = []
    for r in evaluated(table_to_records(table), EvalRange(eval_start, eval_end)):
        base = {"event_id": r.event_id, "method": r.method, "seed": r.seed, "step": r.step,
                "agent_index": r.agent_index, "topic": r.topic, "language": r.language}
        rows.append({**base, "side": "real", "text": r.real_text})
        rows.append({**base, "side": "sim", "text": None if r.failed else r.simulated_text})
    return pd.DataFrame(rows, columns=list(TEXT_COLUMNS))


class AnnotateStage:
    """`map_batches` actor: reads ("text", "topic", "language"), adds LABEL_COLUMNS and
    "annotation_failed". One annotator (and its cache) per actor, built once."""

    def __init__(self, cfg: dict):
        from mfray.eval.run import build_annotator

        self.annotator = build_annotator(EvaluateConfig.model_validate(cfg))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        present = [i for i, t in enumerate(batch["text"]) if isinstance(t, str)]
        items = [AnnotationItem(batch["text"].iat[i], batch["topic"].iat[i], batch["language"].iat[i]) for i in present]
        anns = asyncio.run(self.annotator.annotate(items)) if items else []
        by_row: dict[int, Annotation] = dict(zip(present, anns))
        batch = batch.copy()
        for dim, col in zip(DIMENSIONS, LABEL_COLUMNS):
            batch[col] = [by_row[i].labels.get(dim) if i in by_row else None for i in range(len(batch))]
        batch["annotation_failed"] = [by_row[i].failed if i in by_row else False for i in range(len(batch))]
        return batch


def metrics_for_trajectory(group: pd.DataFrame) -> pd.DataFrame:
    """`map_groups` over one (event, method, seed): reads "side", "step", "agent_index" and
    LABEL_COLUMNS; returns one metrics row per dimension."""
    group = group.sort_values(["agent_index", "side"])
    real = group[group["side"] == "real"]
    sim = group[group["side"] == "sim"]
    if not np.array_equal(real["agent_index"].to_numpy(), sim["agent_index"].to_numpy()):
        raise ValueError("real and simulated rows of a trajectory do not pair up by agent")

    def annotations(frame: pd.DataFrame) -> list[Annotation | None]:
        out = []
        for _, row in frame.iterrows():
            if _none(row["text"]) is None:
                out.append(None)
            else:
                out.append(Annotation(labels={d: _none(row[c]) for d, c in zip(DIMENSIONS, LABEL_COLUMNS)}))
        return out

    head = group.iloc[0]
    rows = trajectory_metrics(list(real["step"]), annotations(real), annotations(sim))
    return pd.DataFrame([{"event_id": head["event_id"], "method": head["method"], "seed": int(head["seed"]), **r} for r in rows])


def _none(value):
    """pandas turns missing strings into None, NaN or pd.NA depending on the path: all are None."""
    return None if not isinstance(value, str) and pd.isna(value) else value
