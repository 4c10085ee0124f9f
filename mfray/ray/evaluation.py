"""The evaluation pipeline on Ray Data, shared by jobs/evaluate.py and a sweep that evaluates its
own runs (jobs/simulate_sweep.py with `evaluate:`): read the output folder's Parquet dataset ->
explode into texts -> score the real actions' NLL in an actor pool holding the policy model
(when nll_model is set) -> annotate in an actor pool -> metrics per trajectory -> the same
tables and radar charts as `mfray evaluate`; the realism report (mfray.eval.realism) is computed
in the driver from the same runs, and the noise floor (mfray.eval.noise) from the real rows of
the annotated dataset, which is materialized once for both the metrics and the floor.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import ray

from mfray.eval.agreement_record import annotator_agreement
from mfray.eval.config import EvaluateConfig
from mfray.eval.evaluate import METRICS, TRAJECTORY_METRICS
from mfray.eval.inputs import evaluable_runs, write_incomplete
from mfray.eval.report import write_summary
from mfray.ray.eval_stages import (
    FLOOR_COLUMNS, TRAJECTORY_COLUMNS, AnnotateStage, NLLStage, driver_floor, driver_realism, explode_sides,
    metrics_for_trajectory,
)
from mfray.sim.store import PublishedRun


def read_trajectories(runs: list[PublishedRun]) -> ray.data.Dataset:
    """TRAJECTORY_COLUMNS of the part files holding `runs` (every run of a part is complete and
    evaluated: mfray.eval.inputs.evaluable_runs reads the same dataset)."""
    return ray.data.read_parquet(sorted({str(r.part) for r in runs}), columns=list(TRAJECTORY_COLUMNS), partitioning=None)


def evaluate_on_ray(
    cfg: EvaluateConfig, annotator_actors: int = 1, nll_actors: int = 1, nll_cpus: float = 1.0, nll_gpus: float = 0.0
) -> list[dict]:
    """Evaluate cfg.trajectories on the connected Ray cluster (see the module docstring); the
    metric rows, with the report files written under cfg.out exactly as `mfray evaluate` writes
    them. Raises ValueError when the cluster's CPUs cannot hold the actor pools plus a task."""
    # Both actor pools hold their CPUs for the whole run; read and metrics tasks need one more,
    # or the pipeline waits forever instead of failing.
    need = annotator_actors + (nll_actors * nll_cpus if cfg.nll_model is not None else 0) + 1
    have = ray.cluster_resources().get("CPU", 0)
    if have < need:
        raise ValueError(f"the Ray cluster has {have:g} CPUs but the actor pools plus one task CPU need {need:g}: "
                         f"lower --annotator-actors/--nll-actors, pass --nll-cpus 0 (or --nll-gpus 1), or add CPUs")
    runs, incomplete = evaluable_runs(cfg.trajectories)
    write_incomplete(incomplete, cfg.out)
    texts = read_trajectories(runs).map_batches(
        partial(explode_sides, eval_start=cfg.eval_start, eval_end=cfg.eval_end), batch_format="pandas")
    if cfg.nll_model is not None:
        texts = texts.map_batches(
            NLLStage, fn_constructor_args=(cfg.model_dump(mode="json"),), batch_format="pandas", batch_size=64,
            compute=ray.data.ActorPoolStrategy(size=nll_actors), num_cpus=nll_cpus, num_gpus=nll_gpus,
        )
    # The prompts have been scored: dropping them keeps the materialized labels small.
    labelled = texts.drop_columns(["policy_prompt"]).map_batches(
        AnnotateStage, fn_constructor_args=(cfg.model_dump(mode="json"),), batch_format="pandas", batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=annotator_actors),
    ).materialize()  # read twice (metrics, noise floor): annotate once
    metrics = labelled.groupby(["event_id", "method", "seed"]).map_groups(metrics_for_trajectory, batch_format="pandas")
    frame = metrics.to_pandas()
    # A block whose values are all NaN comes back as None (Arrow stores NaN as null): make them NaN again.
    frame = frame.astype({c: float for c in (*METRICS, *TRAJECTORY_METRICS, "failure_rate") if c in frame})
    rows = sorted(frame.to_dict("records"), key=lambda r: (r["event_id"], r["method"], r["seed"]))
    realism = driver_realism(runs, cfg) if cfg.realism else None
    floor, annotator = driver_floor(labelled.select_columns(list(FLOOR_COLUMNS)).to_pandas(), cfg.noise_seeds)
    write_summary(rows, Path(cfg.out), cfg.max_failure_rate, realism, floor, annotator,
                  annotator_agreement(annotator) if annotator else None)
    return rows
