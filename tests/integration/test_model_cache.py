"""The default model's GGUF -> safetensors conversion when several processes need it first at
once (as Ray Train workers and a simulation started beside them do): one converts, every process
gets the same complete copy, and what an interrupted run left behind is cleared."""

from __future__ import annotations

import os
import subprocess
import sys

from mfray.llm.models import resolve_model_dir

RESOLVE = "from mfray.llm.models import resolve_model_dir; print(resolve_model_dir('default'))"


def test_concurrent_first_use_converts_once_and_clears_leftovers(tmp_path):
    models = tmp_path / "models"
    target = resolve_model_dir("default").name  # the name under any cache dir (converted already or now)
    broken = models / target  # an interrupted conversion's partial folder: no config.json
    broken.mkdir(parents=True)
    (broken / "tokenizer.json").write_text("{}")
    stale = models / f"{target}.tmp999999"
    stale.mkdir()
    env = {**os.environ, "MFRAY_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1] == str(broken)  # (a library may print a warning first)
    assert (broken / "config.json").is_file() and (broken / "model.safetensors").is_file()
    assert sorted(p.name for p in models.iterdir()) == [target, f"{target}.lock"]
