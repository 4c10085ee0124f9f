"""Trajectories on disk: one Parquet row per agent action (StepRecord)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mfray.llm.base import Prompt
from mfray.types import StepRecord

SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("method", pa.string()),
        ("seed", pa.int64()),
        ("language", pa.string()),
        ("topic", pa.string()),
        ("step", pa.int32()),
        ("agent_index", pa.int32()),
        ("real_text", pa.string()),
        ("simulated_text", pa.string()),
        ("mean_field", pa.string()),
        ("signal", pa.string()),
        ("state_text", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("latency_s", pa.float64()),
        ("failed", pa.bool_()),
        ("warmup", pa.bool_()),
        ("intervention", pa.bool_()),
        ("prompt_hash", pa.string()),
        ("policy_prompt", pa.string()),  # absent from files written before it existed: read as null
    ]
)


def encode_prompt(prompt: Prompt) -> str:
    """A policy prompt as stored in a trajectory: the JSON of its chat messages, not the text of
    one model's chat template, so any model can score it later. Its sha256 is the prompt_hash."""
    return json.dumps(prompt, ensure_ascii=False, sort_keys=True)


def decode_prompt(text: str) -> Prompt:
    """The prompt `encode_prompt` stored."""
    return json.loads(text)


def records_to_table(records: list[StepRecord]) -> pa.Table:
    return pa.Table.from_pylist([dataclasses.asdict(r) for r in records], schema=SCHEMA)


def table_to_records(table: pa.Table) -> list[StepRecord]:
    return [StepRecord(**row) for row in table.to_pylist()]


def trajectory_path(out_dir: str | Path, event_id: str, method: str, seed: int) -> Path:
    """Where one (event, method, seed) trajectory lives; the name makes sweeps resumable."""
    return Path(out_dir) / f"{event_id}__{method}__s{seed}.parquet"


def write_trajectory(records: list[StepRecord], path: str | Path) -> Path:
    """Write atomically (temp file + rename): a partial file never looks complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(records_to_table(records), tmp)
    tmp.replace(path)
    return path


def read_trajectory(path: str | Path) -> list[StepRecord]:
    return table_to_records(pq.read_table(path, schema=SCHEMA))
