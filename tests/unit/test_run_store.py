"""The run store's integrity: file names made from ids, checkpoints that never collide, atomic
writes by concurrent writers, one process per run, run identities that refuse to mix, finished
runs published into one Parquet dataset without loss or duplicates, and evaluation that reads
complete runs only. Driven by the scripted LLM behind the project's own
interface (bookkeeping, not language)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest

from mfray.files import RunBusy, atomic_write, run_lock, safe_name
from mfray.sim.checkpoint import (
    IdentityMismatch, checkpointed_records, refuse_mixing, run_events, run_metadata, run_resumable,
)
from mfray.sim.driver import run_event
from mfray.sim.identity import RunIdentity, differing_parts, make_identity
from mfray.sim.store import RunFiles, publish, published_runs, read_runs, work_dir, work_runs
from mfray.sim.trajectory import append_part, part_files, read_trajectory, write_trajectory
from tests.unit.test_rollout import ScriptedLLM, cfg, make_event, run

BACKEND = {"name": "scripted"}


def ident(c) -> RunIdentity:
    return make_identity(c, BACKEND)


def publish_records(out, records, identity: str = "test-identity") -> None:
    """Put one run's hand-made `records` into `out`'s dataset, as a finished rollout would be."""
    head = records[0]
    meta = {"identity": identity, "parts": {}, "event_id": head.event_id, "event_digest": "hand-made",
            "method": head.method, "seed": head.seed, "complete": True}
    write_trajectory(records, RunFiles.of(out, head.event_id, head.method, head.seed).final, meta)
    publish(out)


def published(out, name: str):
    """The records of the published run `name`."""
    return next(read_runs([published_runs(out)[name]]))[1]


class DyingLLM(ScriptedLLM):
    """Raises after `limit` calls, as a killed worker would stop mid-run."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    async def generate(self, prompts, sampling, adapter=None):
        if len(self.calls) >= self.limit:
            raise RuntimeError("worker killed")
        return await super().generate(prompts, sampling, adapter)


# ---- names -----------------------------------------------------------------------------------
def test_safe_name_hand_worked():
    assert safe_name("E102") == "E102"
    assert safe_name("E1.5") == "E1.5"  # dots inside are kept: names are built by appending suffixes
    # "." first -> %2E, "/" -> %2F: one path component, never "..", never hidden
    assert safe_name("../../x") == "%2E.%2F..%2Fx"
    assert safe_name("a_b") == "a%5Fb"  # "_" encoded: "__" joins run-name parts only
    assert safe_name("a%5Fb") == "a%255Fb"  # "%" encoded too: the encoding is injective
    assert safe_name("微") == "%E5%BE%AE"  # UTF-8 bytes e5 be ae
    long = safe_name("x" * 300)
    assert len(long) == 117 and long.startswith("x" * 100 + "~")
    with pytest.raises(ValueError):
        safe_name("")


def test_event_id_with_path_parts_stays_inside_the_folder_and_keeps_its_id(tmp_path):
    out = tmp_path / "deep" / "out"
    event = dataclasses.replace(make_event(), event_id="../../escape")
    c = cfg()
    path, _ = run(run_resumable(event, ScriptedLLM(), c, 0, out, ident(c)))
    assert path.parent == work_dir(out) and path.name == "%2E.%2F..%2Fescape__mf__s0.parquet"
    assert {r.event_id for r in read_trajectory(path)} == {"../../escape"}
    [part] = publish(out).values()
    assert part.parent == out / "trajectories" / "method=mf"
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")) == [
        part.relative_to(out)]  # the run file and its lock are gone once published
    assert {r.event_id for r in published(out, "%2E.%2F..%2Fescape__mf__s0")} == {"../../escape"}


def test_checkpoints_of_ids_with_dots_do_not_collide(tmp_path):
    e15, e17 = (dataclasses.replace(make_event(), event_id=i) for i in ("E1.5", "E1.7"))
    a, b = RunFiles.of(tmp_path, "E1.5", "mf", 0), RunFiles.of(tmp_path, "E1.7", "state", 1)
    assert len({a.state, a.records, b.state, b.records}) == 4
    c_mf, c_state = cfg(horizon=40), cfg(horizon=40, method="state")
    refs = [run(run_event(e15, ScriptedLLM(), c_mf, 0)), run(run_event(e17, ScriptedLLM(), c_state, 1))]
    for event, c, seed in ((e15, c_mf, 0), (e17, c_state, 1)):  # both killed after checkpointing
        with pytest.raises(RuntimeError, match="killed"):
            run(run_resumable(event, DyingLLM(limit=5), c, seed, tmp_path, ident(c), every=2))
    assert a.state.exists() and b.state.exists()
    got = [read_trajectory(run(run_resumable(e15, ScriptedLLM(), c_mf, 0, tmp_path, ident(c_mf), every=2))[0]),
           read_trajectory(run(run_resumable(e17, ScriptedLLM(), c_state, 1, tmp_path, ident(c_state), every=2))[0])]
    assert got == refs


def test_killed_run_resumes_from_checkpoint_without_loss_or_duplicates(tmp_path):
    event, c = make_event(), cfg(horizon=40)
    reference = run(run_event(event, ScriptedLLM(), c, seed=3))
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 3, tmp_path, ident(c), every=2))
    work = work_dir(tmp_path)
    assert list(work.glob("*.ckpt.json")) and not (work / "ev1__mf__s3.parquet").exists()
    assert work_runs(tmp_path) == ([], ["ev1__mf__s3"])  # incomplete, by name
    # where the progress bar of the resumed run starts: the checkpointed records, only for its identity
    files, meta = RunFiles.of(tmp_path, event.event_id, "mf", 3), run_metadata(ident(c), event, "mf", 3, complete=False)
    saved = json.loads(files.state.read_text(encoding="utf-8"))["n_records"]
    assert 0 < saved < 40 and checkpointed_records(files, meta) == saved
    assert checkpointed_records(files, {**meta, "identity": "other"}) == 0
    assert checkpointed_records(RunFiles.of(tmp_path, "nope", "mf", 3), meta) == 0
    second = ScriptedLLM()
    path, stats = run(run_resumable(event, second, c, 3, tmp_path, ident(c), every=2))
    assert read_trajectory(path) == reference  # nothing lost, nothing twice, same samples
    assert len(second.calls) < 13  # it resumed instead of starting over
    assert sorted(p.name for p in work.iterdir()) == ["ev1__mf__s3.lock", "ev1__mf__s3.parquet"]  # no checkpoint
    assert run(run_resumable(event, ScriptedLLM(), c, 3, tmp_path, ident(c))) == (path, None)  # finished: skipped
    [part] = publish(tmp_path).values()
    assert published(tmp_path, "ev1__mf__s3") == reference
    assert run(run_resumable(event, ScriptedLLM(), c, 3, tmp_path, ident(c))) == (part, None)  # published: skipped
    assert [p.name for p in work.iterdir() if not p.name.startswith(".")] == []


# ---- concurrent writers --------------------------------------------------------------------
def test_concurrent_atomic_writers_each_publish_a_whole_file(tmp_path):
    """Two writers of one path, interleaved: each writes into its own temp file, so whichever
    renames last publishes its complete content and neither fails. (With one shared temp name
    the second open truncates the first writer's file and the second rename finds nothing.)"""
    target = tmp_path / "t.parquet"
    both_written = threading.Barrier(2)
    errors = []

    def writer(tag: bytes) -> None:
        def write(tmp):
            tmp.write_bytes(tag * 1000)
            both_written.wait(timeout=10)
        try:
            atomic_write(target, write)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in (b"A", b"B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in (b"A" * 1000, b"B" * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temp file left


class YieldingLLM(ScriptedLLM):
    """Gives the event loop a turn per call, as a real backend waiting on a server does."""

    async def generate(self, prompts, sampling, adapter=None):
        await asyncio.sleep(0.01)
        return await super().generate(prompts, sampling, adapter)


def test_one_run_is_never_worked_on_twice_at_once(tmp_path):
    """The same (event, method, seed) started twice in one folder: the second is refused while
    the first runs, and the output is the one complete run."""
    event, c = make_event(), cfg()
    results = run(run_events([event, event], YieldingLLM(), c, 0, tmp_path, ident(c), concurrency=2))
    errors = [r.error for r in results if r.error]
    assert len(errors) == 1 and errors[0].startswith("RunBusy:")
    assert published(tmp_path, "ev1__mf__s0") == run(run_event(event, ScriptedLLM(), c, 0))
    assert len(published_runs(tmp_path)) == 1


def _hold_lock(path, ready):
    with run_lock(path):
        ready.set()
        time.sleep(60)


def test_run_lock_is_exclusive_across_processes_and_dies_with_its_holder(tmp_path):
    lock = tmp_path / "r.lock"
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(lock, ready))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(RunBusy, match="another process is running"):
            with run_lock(lock):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a killed actor
        holder.join()
    with run_lock(lock):  # no stale lock left behind
        pass


# ---- identity ----------------------------------------------------------------------------------
def test_rerun_under_another_config_refuses_to_mix_and_overwrite_redoes_it(tmp_path):
    event, c20, c24 = make_event(), cfg(), cfg(horizon=24)
    other = dataclasses.replace(event, event_id="ev2")
    run(run_events([event, other], ScriptedLLM(), c20, 0, tmp_path, ident(c20)))
    meta = published_runs(tmp_path)["ev1__mf__s0"].meta
    assert meta["identity"] == ident(c20).digest and meta["complete"] and meta["event_id"] == "ev1"
    [part] = {r.part for r in published_runs(tmp_path).values()}  # both runs in one part file
    assert run(run_resumable(event, ScriptedLLM(), c20, 0, tmp_path, ident(c20))) == (part, None)
    with pytest.raises(IdentityMismatch, match=r"differs in: rollout\.horizon.*--overwrite"):
        run(run_resumable(event, ScriptedLLM(), c24, 0, tmp_path, ident(c24)))
    with pytest.raises(IdentityMismatch, match=r"ev1__mf__s0 \(rollout\.horizon\)"):
        refuse_mixing(tmp_path, {"mf": ident(c24)})
    refuse_mixing(tmp_path, {"mf": ident(c20), "state": ident(c24)})  # same identity / other method: fine
    results = run(run_events([event], ScriptedLLM(), c24, 0, tmp_path, ident(c24), overwrite=True))
    assert results[0].stats is not None and results[0].path != part
    runs = published_runs(tmp_path)
    assert len(published(tmp_path, "ev1__mf__s0")) == 24 and runs["ev1__mf__s0"].meta["identity"] == ident(c24).digest
    assert len(published(tmp_path, "ev2__mf__s0")) == 20 and runs["ev2__mf__s0"].part == part  # old part rewritten
    assert sorted(pq.read_table(tmp_path / "trajectories", partitioning=None).column("event_id").to_pylist()) == (
        ["ev1"] * 24 + ["ev2"] * 20)  # the dataset holds each run once


def test_changed_event_data_or_backend_or_unrecorded_identity_is_not_skipped(tmp_path):
    event, c = make_event(), cfg()
    run(run_events([event], ScriptedLLM(), c, 0, tmp_path, ident(c)))
    edited = dataclasses.replace(event, responses=event.responses[:-1])
    with pytest.raises(IdentityMismatch, match="another version of the event's data"):
        run(run_resumable(edited, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    other_model = make_identity(c, {"name": "scripted", "weights": "other"})
    assert differing_parts(ident(c).parts, other_model.parts) == ["backend.weights"]
    with pytest.raises(IdentityMismatch, match="backend.weights"):
        run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, other_model))
    write_trajectory(published(tmp_path, "ev1__mf__s0"), RunFiles.of(tmp_path, "old", "mf", 0).final)  # no metadata
    with pytest.raises(IdentityMismatch, match="no identity recorded"):
        refuse_mixing(tmp_path, {"mf": ident(c)})


def test_a_folder_of_the_one_file_per_run_layout_is_refused_with_the_fix(tmp_path):
    from mfray.eval.inputs import evaluable_runs

    event, c = make_event(), cfg()
    write_trajectory(run(run_event(event, ScriptedLLM(), c, 0)), tmp_path / "ev1__mf__s0.parquet")
    with pytest.raises(IdentityMismatch, match="one-file-per-run layout.*write to a new folder"):
        refuse_mixing(tmp_path, {"mf": ident(c)})
    with pytest.raises(ValueError, match="one-file-per-run layout"):
        evaluable_runs(tmp_path)


def test_identity_covers_the_rollout_config_and_method():
    assert ident(cfg()).digest == ident(cfg()).digest
    assert differing_parts(ident(cfg()).parts, ident(cfg(method="state")).parts) == ["rollout.method"]
    assert differing_parts({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == ["a.c", "d"]


# ---- evaluation inputs --------------------------------------------------------------------
def test_evaluation_reads_complete_runs_only_and_refuses_mixed_configs(tmp_path):
    from mfray.eval.inputs import evaluable_runs, write_incomplete

    event, c = make_event(), cfg(horizon=40)
    run(run_events([event], ScriptedLLM(), c, 0, tmp_path, ident(c)))
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 1, tmp_path, ident(c), every=2))
    assert list((work_dir(tmp_path) / "ev1__mf__s1.ckpt.parts").glob("part-*.parquet"))  # checkpoint parts lie in the folder
    run(run_resumable(event, ScriptedLLM(), c, 2, tmp_path, ident(c)))  # finished, not yet published
    assert evaluable_runs(tmp_path) == ([published_runs(tmp_path)["ev1__mf__s0"]], ["ev1__mf__s1", "ev1__mf__s2"])
    assert write_incomplete(["ev1__mf__s1"], tmp_path / "eval").read_text() == "ev1__mf__s1\n"
    assert write_incomplete([], tmp_path / "eval") is None and not (tmp_path / "eval" / "incomplete_runs.txt").exists()
    c24 = cfg(horizon=24)
    run(run_events([dataclasses.replace(event, event_id="ev2")], ScriptedLLM(), c24, 0, tmp_path, ident(c24)))
    with pytest.raises(ValueError, match=r"method mf has runs made under 2 different configs.*rollout\.horizon"):
        evaluable_runs(tmp_path)


def test_evaluation_of_a_folder_with_only_incomplete_runs_names_them(tmp_path):
    from mfray.eval.inputs import evaluable_runs

    event, c = make_event(), cfg(horizon=40)
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 0, tmp_path, ident(c), every=2))
    with pytest.raises(FileNotFoundError, match="1 incomplete runs: ev1__mf__s0"):
        evaluable_runs(tmp_path)


def test_checkpoint_state_carries_the_run_identity_and_counts_its_parts(tmp_path):
    event, c = make_event(), cfg(horizon=40)
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 0, tmp_path, ident(c), every=2))
    files = RunFiles.of(tmp_path, "ev1", "mf", 0)
    state = json.loads(files.state.read_text())
    assert state["run"]["identity"] == ident(c).digest and state["run"]["complete"] is False
    parts = sorted(files.records.glob("part-*.parquet"))
    # every=2 steps of 4 agents: one part of 8 records per checkpoint, named by its first record
    assert [p.name for p in parts] == [f"part-{i:010d}.parquet" for i in range(0, state["n_records"], 8)]
    assert sum(pq.read_table(p).num_rows for p in parts) == state["n_records"] > 0
    with pytest.raises(IdentityMismatch, match=r"\.ckpt\.json.*rollout\.retries"):  # a checkpoint of another config
        run(run_resumable(event, ScriptedLLM(), cfg(horizon=40, retries=2), 0, tmp_path, ident(cfg(horizon=40, retries=2))))


def test_a_part_written_after_the_last_state_is_dropped_on_resume(tmp_path):
    """A crash between a checkpoint's part and its state leaves a part the state does not count:
    the resumed run redoes those steps, so nothing is held twice."""
    event, c = make_event(), cfg(horizon=40)
    reference = run(run_event(event, ScriptedLLM(), c, seed=0))
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 0, tmp_path, ident(c), every=2))
    files = RunFiles.of(tmp_path, "ev1", "mf", 0)
    n = json.loads(files.state.read_text())["n_records"]
    orphan = append_part(files.records, n, reference[n: n + 4])
    assert orphan not in part_files(files.records, n) and not orphan.exists()
    append_part(files.records, n, reference[n: n + 4])  # again, for the resumed run to meet
    path, _ = run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, ident(c), every=2))
    assert read_trajectory(path) == reference


def test_parts_that_do_not_cover_the_state_restart_the_run(tmp_path):
    event, c = make_event(), cfg(horizon=40)
    reference = run(run_event(event, ScriptedLLM(), c, seed=0))
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 0, tmp_path, ident(c), every=2))
    files = RunFiles.of(tmp_path, "ev1", "mf", 0)
    sorted(files.records.glob("part-*.parquet"))[0].unlink()  # a lost part
    with pytest.raises(ValueError, match="part-0000000008.parquet starts at record 8, expected 0"):
        part_files(files.records, json.loads(files.state.read_text())["n_records"])
    legacy = work_dir(tmp_path) / "ev1__mf__s0.ckpt.parquet"  # the one-file checkpoint of earlier versions
    write_trajectory(reference[:8], legacy, {"method": "mf"})
    assert work_runs(tmp_path) == ([], ["ev1__mf__s0"])  # never taken for a finished run
    path, _ = run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, ident(c), every=2))
    assert read_trajectory(path) == reference and not legacy.exists()


def test_a_run_longer_than_a_row_group_streams_through_parts_and_publish(tmp_path, monkeypatch):
    import mfray.sim.store as store

    monkeypatch.setattr(store, "ROW_GROUP", 16)
    event, c = make_event(), cfg(horizon=40)
    reference = run(run_event(event, ScriptedLLM(), c, seed=0))
    path, _ = run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, ident(c), every=3))
    # the finished file is its parts joined: 3 steps of 4 agents a part, one row group each
    assert pq.ParquetFile(path).metadata.num_row_groups == 4 and read_trajectory(path) == reference
    [part] = publish(tmp_path).values()
    assert pq.ParquetFile(part).metadata.num_row_groups == 3  # 16 + 16 + 8 rows
    assert published(tmp_path, "ev1__mf__s0") == reference


# ---- the dataset ---------------------------------------------------------------------------------
def test_finished_runs_land_in_one_part_per_method_and_read_as_one_table(tmp_path):
    import pyarrow.dataset as ds

    events = [dataclasses.replace(make_event(), event_id=f"ev{i}") for i in range(3)]
    for method in ("mf_ibtune", "state"):
        c = cfg(method=method)
        run(run_events(events, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    parts = sorted(p.relative_to(tmp_path / "trajectories").parent.name for p in (tmp_path / "trajectories").rglob("*.parquet"))
    assert parts == ["method=mf_ibtune", "method=state"]  # 3 runs each, one file per method
    table = ds.dataset(tmp_path / "trajectories", partitioning="hive").to_table()
    assert table.num_rows == 6 * 20 and sorted(set(table.column("method").to_pylist())) == ["mf_ibtune", "state"]
    for name, records in read_runs(published_runs(tmp_path).values()):
        assert {(r.event_id, r.method) for r in records} == {(name.meta["event_id"], name.method)}
        assert [r.agent_index for r in records] == list(range(20))


def test_a_rerun_publishes_nothing_and_leaves_every_file_as_it_was(tmp_path):
    events, c = [dataclasses.replace(make_event(), event_id=f"ev{i}") for i in range(2)], cfg()
    run(run_events(events, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    llm = ScriptedLLM()
    results = run(run_events(events, llm, c, 0, tmp_path, ident(c)))
    assert llm.calls == [] and all(r.stats is None for r in results)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_crash_between_writing_the_part_and_clearing_the_run_files_leaves_no_duplicate(tmp_path):
    event, c = make_event(), cfg()
    path, _ = run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    left = path.read_bytes()
    publish(tmp_path)
    path.write_bytes(left)  # as if the publisher died after its part was in place
    assert work_runs(tmp_path)[0] == [path]
    assert publish(tmp_path) == {"ev1__mf__s0": published_runs(tmp_path)["ev1__mf__s0"].part}
    assert not path.exists() and len(list((tmp_path / "trajectories").rglob("*.parquet"))) == 1
    assert pq.read_table(tmp_path / "trajectories", partitioning=None).num_rows == 20


def test_publish_leaves_a_run_whose_lock_is_held_for_later(tmp_path):
    event, c = make_event(), cfg()
    path, _ = run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    with run_lock(RunFiles.of(tmp_path, "ev1", "mf", 0).lock):  # another process still holds it
        assert publish(tmp_path) == {} and path.exists()
    assert list(publish(tmp_path)) == ["ev1__mf__s0"] and not path.exists()
