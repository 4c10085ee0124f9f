"""LLM backends behind one narrow interface (see base.py)."""

from __future__ import annotations


def build_llm(model, endpoint=None):
    """The local engine for `model` (a ModelConfig), or an OpenAI-compatible client when an
    EndpointConfig is given. Imports lazily: nothing heavy happens at import time."""
    if endpoint is not None:
        from mfray.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(
            base_url=endpoint.base_url,
            model=endpoint.model,
            api_key_env=endpoint.api_key_env,
            mode=endpoint.mode,
            max_concurrency=endpoint.max_concurrency,
            timeout_s=endpoint.timeout_s,
            max_retries=endpoint.max_retries,
            backoff_s=endpoint.backoff_s,
            send_extra_sampling=endpoint.extra_sampling,
            adapter_prefix=endpoint.adapter_prefix,
        )
    return load_engine(model.path, dtype=model.dtype, device=model.device, adapters=model.adapters, max_batch=model.max_batch)


def load_engine(path: str = "default", dtype: str = "auto", device: str = "auto", adapters: dict[str, str] | None = None,
                max_batch: int = 32):
    """The in-process engine for a model path: the local transformers engine (LocalEngine.load),
    or, for the path "standin", the canned stand-in used to measure orchestration
    (mfray.llm.standin; its adapters are names only)."""
    from mfray.llm.standin import STANDIN_PATH, StandInLLM

    if path == STANDIN_PATH:
        return StandInLLM(adapters=tuple(adapters or ()))
    from mfray.llm.local import LocalEngine

    return LocalEngine.load(path, dtype=dtype, device=device, adapters=adapters, max_batch=max_batch)
