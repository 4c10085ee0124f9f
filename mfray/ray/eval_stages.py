"""Evaluation as Ray Data stages: explode trajectories into texts, score the real actions' NLL
and annotate them in actor pools (`map_batches`), compute metrics per trajectory
(`groupby().map_groups`); realism and the noise floor in the driver (`driver_realism`,
`driver_floor`).

Each stage declares the columns it reads; the work itself is the same pure code the single
process path runs (mfray.eval.evaluate), so both give identical numbers.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd

from mfray.eval.annotate import Annotation, AnnotationItem
from mfray.eval.config import EvaluateConfig
from mfray.eval.evaluate import EvalRange, evaluated, generation_failures, trajectory_metrics
from mfray.eval.labels import DIMENSIONS
from mfray.eval.nll import build_scorer, method_adapter, nll_pair, score_pairs, trajectory_nll
from mfray.eval.noise import evaluation_floor
from mfray.eval.realism import RealismInputs, realism_rows
from mfray.sim.store import PublishedRun, read_runs
from mfray.sim.trajectory import table_to_records

TRAJECTORY_COLUMNS = ("event_id", "method", "seed", "language", "topic", "step", "agent_index",
                      "real_text", "simulated_text", "failed", "warmup", "intervention", "policy_prompt")
TEXT_COLUMNS = ("event_id", "method", "seed", "step", "agent_index", "side", "text", "topic", "language",
                "policy_prompt", "failed", "intervention")
LABEL_COLUMNS = tuple(f"label_{d}" for d in DIMENSIONS)
NLL_STAGE_COLUMNS = ("nll_sum", "nll_tokens")  # NLLStage's output: summed log-prob (NaN: unscored), tokens
FLOOR_COLUMNS = ("event_id", "agent_index", "step", "side", "annotator", *LABEL_COLUMNS)  # what driver_floor reads


def explode_sides(batch: pd.DataFrame, eval_start: int, eval_end: int) -> pd.DataFrame:
    """Reads TRAJECTORY_COLUMNS (policy_prompt may be absent: files older than it); returns
    TEXT_COLUMNS: one row per evaluated agent and side ("real", "sim"); a failed generation's sim
    row has text None (it stays, to be counted). Only the real row carries the policy prompt;
    both carry the agent's "failed" and "intervention" flags (for `generation_failures`)."""
    import pyarrow as pa

    from mfray.sim.trajectory import SCHEMA

    full = {name: batch[name] if name in batch else None for name in SCHEMA.names}
    table = pa.Table.from_pandas(pd.DataFrame(full), schema=SCHEMA, preserve_index=False)
    rows = []
    for r in evaluated(table_to_records(table), EvalRange(eval_start, eval_end)):
        base = {"event_id": r.event_id, "method": r.method, "seed": r.seed, "step": r.step,
                "agent_index": r.agent_index, "topic": r.topic, "language": r.language,
                "failed": r.failed, "intervention": r.intervention}
        rows.append({**base, "side": "real", "text": r.real_text, "policy_prompt": r.policy_prompt})
        rows.append({**base, "side": "sim", "text": None if r.failed else r.simulated_text, "policy_prompt": None})
    return pd.DataFrame(rows, columns=list(TEXT_COLUMNS))


class AnnotateStage:
    """`map_batches` actor: reads ("text", "topic", "language"), adds LABEL_COLUMNS,
    "annotation_failed" and "annotator" (the annotator's name, for the report). One annotator (and
    its cache) per actor, built once."""

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
        batch["annotator"] = self.annotator.name
        return batch


class NLLStage:
    """`map_batches` actor: reads ("side", "method", "text", "policy_prompt"), adds
    NLL_STAGE_COLUMNS for real rows (sim rows and real rows without a prompt: NaN, 0). One policy
    engine per actor (cfg.nll_model and its adapters), loaded once."""

    def __init__(self, cfg: dict):
        self.cfg = EvaluateConfig.model_validate(cfg)
        self.scorer = build_scorer(self.cfg)
        if self.scorer is None:
            raise ValueError("NLLStage needs nll_model set (it is null: NLL is off, leave the stage out)")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        sums, tokens = [float("nan")] * len(batch), [0] * len(batch)
        for method in sorted(set(batch["method"])):
            rows = [i for i in range(len(batch)) if batch["side"].iat[i] == "real" and batch["method"].iat[i] == method]
            pairs = [nll_pair(_none(batch["policy_prompt"].iat[i]), _none(batch["text"].iat[i])) for i in rows]
            scored = asyncio.run(score_pairs(pairs, self.scorer, method_adapter(method, self.cfg.nll_adapters)))
            for i, total in zip(rows, scored):
                if total is not None:
                    sums[i], tokens[i] = total
        return batch.assign(nll_sum=sums, nll_tokens=tokens)


def metrics_for_trajectory(group: pd.DataFrame) -> pd.DataFrame:
    """`map_groups` over one (event, method, seed): reads "side", "step", "agent_index",
    "failed", "intervention", LABEL_COLUMNS and, when the NLL stage ran, NLL_STAGE_COLUMNS;
    returns one metrics row per dimension (with the trajectory's failure and NLL columns on each,
    as the single-process path does)."""
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
    extra = generation_failures([bool(f) for f in sim["failed"]], [bool(i) for i in sim["intervention"]])
    if "nll_sum" in group:
        totals = [None if pd.isna(s) else (float(s), int(n)) for s, n in zip(real["nll_sum"], real["nll_tokens"])]
        extra.update(trajectory_nll(totals))
    return pd.DataFrame([{"event_id": head["event_id"], "method": head["method"], "seed": int(head["seed"]), **r, **extra}
                         for r in rows])


def driver_realism(runs: list[PublishedRun], cfg: EvaluateConfig) -> list[dict]:
    """Realism rows (mfray.eval.realism.realism_rows) of the complete `runs`, computed
    in the driver: the evaluated records of each run go through the same RealismInputs and
    realism_rows as in `mfray evaluate`, so both paths write the same realism.csv. Cheap next to
    annotation (texts only, one small classifier per method), so it needs no stage of its own."""
    inputs = RealismInputs()
    for _, records in read_runs(runs):
        inputs.add(evaluated(records, EvalRange(cfg.eval_start, cfg.eval_end)))
    return realism_rows(inputs, cfg.realism_seed, cfg.realism_folds)


def driver_floor(frame: pd.DataFrame, seeds) -> tuple[list[dict], str | None]:
    """(noise floor rows, annotator name) from the annotated text rows `frame` (FLOOR_COLUMNS of
    AnnotateStage's output, any order): the real rows, each (event, agent) once, through
    mfray.eval.noise.evaluation_floor with `seeds`, exactly as `mfray evaluate` does; the name is
    the one annotator of the rows (more than one is an error: the labels would not be comparable)."""
    names = sorted({n for n in frame["annotator"] if isinstance(n, str)}) if "annotator" in frame else []
    if len(names) > 1:
        raise ValueError(f"the annotated rows carry several annotator names {names}: one evaluation, one annotator")
    real = frame[frame["side"] == "real"].sort_values(["event_id", "agent_index"], kind="stable")
    posts: dict[str, dict[int, tuple[int, dict]]] = {}
    for row in real.itertuples(index=False):
        r = row._asdict()
        labels = {d: _none(r[c]) for d, c in zip(DIMENSIONS, LABEL_COLUMNS)}
        posts.setdefault(r["event_id"], {}).setdefault(int(r["agent_index"]), (int(r["step"]), labels))
    return evaluation_floor(posts, seeds), (names[0] if names else None)


def _none(value):
    """pandas turns missing strings into None, NaN or pd.NA depending on the path: all are None."""
    return None if not isinstance(value, str) and pd.isna(value) else value
