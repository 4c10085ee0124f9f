"""`mfray simulate` end to end on real event files with a tiny real model: Parquet out, resume
skips finished runs, a bad file is reported without stopping the others."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from mfray.cli import main
from mfray.sim.store import published_runs, read_runs

pytestmark = pytest.mark.integration


def test_simulate_writes_trajectories_and_skips_finished_runs(data_dir, tiny_model_dir, tmp_path, capsys):
    events = tmp_path / "events"
    events.mkdir()
    shutil.copy(data_dir / "weibo_rumdect/test/3476055656644087.json", events)
    shutil.copy(data_dir / "twitter_rumdect/E102.json", events)
    (events / "broken.json").write_text('[{"id": "1", "t": 5', encoding="utf-8")
    out = tmp_path / "out"
    argv = ["simulate", "--events", str(events), "--method", "mf", "--method", "recent", "--horizon", "24",
            "--agents-per-step", "8", "--sim-start", "8", "--out", str(out), "--model", str(tiny_model_dir),
            "--set", "rollout.policy.max_new_tokens=4", "--set", "rollout.mean_field.max_new_tokens=8"]
    assert main(argv) == 1  # one file was bad: reported, and the exit code says so
    err = capsys.readouterr().err
    assert "broken.json" in err
    assert sorted(published_runs(out)) == ["3476055656644087__mf__s0", "3476055656644087__recent__s0",
                                           "E102__mf__s0", "E102__recent__s0"]
    table = pq.read_table(out / "trajectories", partitioning=None)  # one dataset, one part file per method
    assert table.num_rows == 4 * 24 and len(list((out / "trajectories").rglob("part-*.parquet"))) == 2
    e102 = next(read_runs([published_runs(out)["E102__mf__s0"]]))[1]
    assert [r.warmup for r in e102] == [True] * 8 + [False] * 16
    (events / "broken.json").unlink()
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    # The same folder under another rollout config: refused, naming what differs; --overwrite redoes it.
    longer = [a if a != "24" else "32" for a in argv]
    with pytest.raises(SystemExit, match=r"(?s)made under another config.*rollout\.horizon.*--overwrite"):
        main(longer)
    assert main([*longer, "--overwrite"]) == 0
    assert published_runs(out)["E102__mf__s0"].rows == 32
    assert pq.read_table(out / "trajectories", partitioning=None).num_rows == 4 * 32  # the old runs are gone


def test_the_same_event_id_in_two_files_is_refused_naming_both(data_dir, tiny_model_dir, tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(data_dir / "twitter_rumdect/E102.json", tmp_path / sub)
    argv = ["simulate", "--events", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out"),
            "--model", str(tiny_model_dir), "--horizon", "8", "--sim-start", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"'E102' is in both {tmp_path / 'a' / 'E102.json'} and {tmp_path / 'b' / 'E102.json'}" in err
    assert not (tmp_path / "out").exists()


def test_adapter_methods_without_adapters_fail_with_a_fix(data_dir, tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit, match="model.adapters.sft=PATH"):
        main(["simulate", "--events", str(data_dir / "twitter_rumdect/E102.json"), "--method", "sft",
              "--out", str(tmp_path), "--model", str(tiny_model_dir)])


def test_the_adapter_given_on_the_command_line_reaches_the_engine(data_dir, tiny_model_dir, tiny_adapters, tmp_path):
    """`--set model.adapters.sft=DIR`: a trained (non-zero) adapter changes the simulated posts
    against an untrained one (which computes the base model), same seed; and the run's identity
    records the adapter's content, so the two runs cannot be mixed in one folder."""
    from mfray.train.lora import init_adapters

    untrained = init_adapters(str(tiny_model_dir), tmp_path / "untrained", names=("sft",), rank=4, alpha=4)["sft"]
    base = ["simulate", "--events", str(data_dir / "twitter_rumdect/E102.json"), "--method", "sft", "--horizon", "16",
            "--agents-per-step", "8", "--sim-start", "8", "--model", str(tiny_model_dir),
            "--set", "rollout.policy.max_new_tokens=6", "--set", "rollout.policy.temperature=0"]
    texts = {}
    for name, adapter in (("trained", tiny_adapters["sft"]), ("untrained", untrained)):
        assert main([*base, "--out", str(tmp_path / name), "--set", f"model.adapters.sft={adapter}"]) == 0
        run, records = next(read_runs(published_runs(tmp_path / name).values()))
        texts[name] = [r.simulated_text for r in records if not r.warmup]
        assert set(run.meta["parts"]["backend"]["adapters"]) == {"sft"}
    assert texts["trained"] != texts["untrained"]
    with pytest.raises(SystemExit, match=r"(?s)backend\.adapters\.sft"):
        main([*base, "--out", str(tmp_path / "trained"), "--set", f"model.adapters.sft={untrained}"])
