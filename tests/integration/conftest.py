"""Real models for integration tests: the default model (loaded once per session) and a tiny
randomly initialised Llama that shares its tokenizer."""

from __future__ import annotations

import pytest

from mfray.llm.local import LocalEngine
from mfray.llm.models import build_tiny_model, resolve_model_dir


@pytest.fixture(scope="session")
def engine() -> LocalEngine:
    return LocalEngine.load("default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(resolve_model_dir("default"), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir) -> LocalEngine:
    return LocalEngine.load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray with as many CPUs as this machine's cores (2), per test module."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
