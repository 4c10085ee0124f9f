"""Real models for integration tests: the default model (loaded once per session), a tiny
randomly initialised Llama that shares its tokenizer, and LoRA adapters of the tiny model whose
weights change its output (seeded random, non-zero B; tests/adapters.py says why)."""

from __future__ import annotations

import socket

import pytest

from mfray.llm.local import LocalEngine
from mfray.llm.models import build_tiny_model, resolve_model_dir
from tests.adapters import write_random_lora_adapters

# The adapter names the sft and mf_ibtune methods request (training writes real ones under them).
TINY_ADAPTER_NAMES = ("sft", "ib_policy", "ib_mean_field")


@pytest.fixture(scope="session")
def engine() -> LocalEngine:
    return LocalEngine.load("default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(resolve_model_dir("default"), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir) -> LocalEngine:
    return LocalEngine.load(str(tiny_model_dir))


@pytest.fixture(scope="session")
def tiny_adapters(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """{name: PEFT LoRA dir} for TINY_ADAPTER_NAMES on the tiny model: rank 4, seeded random
    non-zero B, distinct per name, so base and each adapter give different greedy generations and
    log-probs (unlike untrained adapters, which compute the base model)."""
    return write_random_lora_adapters(tiny_model_dir, tmp_path_factory.mktemp("tiny_adapters"), TINY_ADAPTER_NAMES)


@pytest.fixture(scope="session")
def tiny_adapter_engine(tiny_model_dir, tiny_adapters) -> LocalEngine:
    """The tiny model with all of `tiny_adapters` loaded: the direct-call reference for tests
    that route requests to an adapter through a server."""
    return LocalEngine.load(str(tiny_model_dir), adapters=tiny_adapters)


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray with as many CPUs as this machine's cores (2), per test module."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
