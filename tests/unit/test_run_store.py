"""The run store's integrity: file names made from ids, checkpoints that never collide, atomic
writes by concurrent writers, one process per run, run identities that refuse to mix, and
evaluation that reads complete runs only. Driven by the scripted LLM behind the project's own
interface (bookkeeping, not language)."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest

from mfray.files import RunBusy, atomic_write, run_lock, safe_name
from mfray.sim.checkpoint import IdentityMismatch, RunFiles, refuse_mixing, run_events, run_resumable
from mfray.sim.driver import run_event
from mfray.sim.identity import RunIdentity, differing_parts, make_identity
from mfray.sim.trajectory import list_runs, read_trajectory, run_meta, trajectory_path, write_trajectory
from tests.unit.test_rollout import ScriptedLLM, cfg, make_event, run

BACKEND = {"name": "scripted"}


def ident(c) -> RunIdentity:
    return make_identity(c, BACKEND)


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
    assert path.parent == out and path.name == "%2E.%2F..%2Fescape__mf__s0.parquet"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [path.name]
    assert {r.event_id for r in read_trajectory(path)} == {"../../escape"}


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
    assert list(tmp_path.glob("*.ckpt.json")) and not (tmp_path / "ev1__mf__s3.parquet").exists()
    assert list_runs(tmp_path) == ([], ["ev1__mf__s3"])  # incomplete, by name
    second = ScriptedLLM()
    path, stats = run(run_resumable(event, second, c, 3, tmp_path, ident(c), every=2))
    assert read_trajectory(path) == reference  # nothing lost, nothing twice, same samples
    assert len(second.calls) < 13  # it resumed instead of starting over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev1__mf__s3.parquet"]  # no checkpoint, no lock left
    assert run(run_resumable(event, ScriptedLLM(), c, 3, tmp_path, ident(c))) == (path, None)  # finished: skipped


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
    assert read_trajectory(trajectory_path(tmp_path, "ev1", "mf", 0)) == run(run_event(event, ScriptedLLM(), c, 0))


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
    path, _ = run(run_resumable(event, ScriptedLLM(), c20, 0, tmp_path, ident(c20)))
    meta = run_meta(path)
    assert meta["identity"] == ident(c20).digest and meta["complete"] and meta["event_id"] == "ev1"
    assert run(run_resumable(event, ScriptedLLM(), c20, 0, tmp_path, ident(c20))) == (path, None)
    with pytest.raises(IdentityMismatch, match=r"differs in: rollout\.horizon.*--overwrite"):
        run(run_resumable(event, ScriptedLLM(), c24, 0, tmp_path, ident(c24)))
    with pytest.raises(IdentityMismatch, match=r"ev1__mf__s0\.parquet \(rollout\.horizon\)"):
        refuse_mixing(tmp_path, {"mf": ident(c24)})
    refuse_mixing(tmp_path, {"mf": ident(c20), "state": ident(c24)})  # same identity / other method: fine
    assert len(read_trajectory(path)) == 20
    _, stats = run(run_resumable(event, ScriptedLLM(), c24, 0, tmp_path, ident(c24), overwrite=True))
    assert stats is not None and len(read_trajectory(path)) == 24 and run_meta(path)["identity"] == ident(c24).digest


def test_changed_event_data_or_backend_or_unrecorded_identity_is_not_skipped(tmp_path):
    event, c = make_event(), cfg()
    run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    edited = dataclasses.replace(event, responses=event.responses[:-1])
    with pytest.raises(IdentityMismatch, match="another version of the event's data"):
        run(run_resumable(edited, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    other_model = make_identity(c, {"name": "scripted", "weights": "other"})
    assert differing_parts(ident(c).parts, other_model.parts) == ["backend.weights"]
    with pytest.raises(IdentityMismatch, match="backend.weights"):
        run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, other_model))
    legacy = trajectory_path(tmp_path, "old", "mf", 0)
    write_trajectory(read_trajectory(trajectory_path(tmp_path, "ev1", "mf", 0)), legacy)  # no metadata
    with pytest.raises(IdentityMismatch, match="no identity recorded"):
        refuse_mixing(tmp_path, {"mf": ident(c)})


def test_identity_covers_the_rollout_config_and_method():
    assert ident(cfg()).digest == ident(cfg()).digest
    assert differing_parts(ident(cfg()).parts, ident(cfg(method="state")).parts) == ["rollout.method"]
    assert differing_parts({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == ["a.c", "d"]


# ---- evaluation inputs --------------------------------------------------------------------
def test_evaluation_reads_complete_runs_only_and_refuses_mixed_configs(tmp_path):
    from mfray.eval.inputs import evaluable_runs, write_incomplete

    event, c = make_event(), cfg(horizon=40)
    done, _ = run(run_resumable(event, ScriptedLLM(), c, 0, tmp_path, ident(c)))
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 1, tmp_path, ident(c), every=2))
    assert (tmp_path / "ev1__mf__s1.ckpt.parquet").exists()  # a checkpoint Parquet lies in the folder
    assert evaluable_runs(tmp_path) == ([done], ["ev1__mf__s1"])
    assert write_incomplete(["ev1__mf__s1"], tmp_path / "eval").read_text() == "ev1__mf__s1\n"
    assert write_incomplete([], tmp_path / "eval") is None and not (tmp_path / "eval" / "incomplete_runs.txt").exists()
    c24 = cfg(horizon=24)
    run(run_resumable(dataclasses.replace(event, event_id="ev2"), ScriptedLLM(), c24, 0, tmp_path, ident(c24)))
    with pytest.raises(ValueError, match=r"method mf has runs made under 2 different configs.*rollout\.horizon"):
        evaluable_runs(tmp_path)


def test_evaluation_of_a_folder_with_only_incomplete_runs_names_them(tmp_path):
    from mfray.eval.inputs import evaluable_runs

    event, c = make_event(), cfg(horizon=40)
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 0, tmp_path, ident(c), every=2))
    with pytest.raises(FileNotFoundError, match="1 incomplete runs: ev1__mf__s0"):
        evaluable_runs(tmp_path)


def test_checkpoint_records_carry_the_run_identity(tmp_path):
    event, c = make_event(), cfg(horizon=40)
    with pytest.raises(RuntimeError, match="killed"):
        run(run_resumable(event, DyingLLM(limit=9), c, 0, tmp_path, ident(c), every=2))
    meta = run_meta(tmp_path / "ev1__mf__s0.ckpt.parquet")
    assert meta["identity"] == ident(c).digest and meta["complete"] is False
    assert pq.read_table(tmp_path / "ev1__mf__s0.ckpt.parquet").num_rows > 0
    with pytest.raises(IdentityMismatch, match=r"\.ckpt\.json.*rollout\.retries"):  # a checkpoint of another config
        run(run_resumable(event, ScriptedLLM(), cfg(horizon=40, retries=2), 0, tmp_path, ident(cfg(horizon=40, retries=2))))
