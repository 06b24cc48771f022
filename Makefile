# `make demo` and `make test` each do their own set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# On a CPU machine the CPU build of torch goes in first: a bare `torch` pulls a multi-GB CUDA build.
# On a GPU machine: make setup TORCH_SPEC=torch   (PyPI's default Linux build carries CUDA)
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,rl]"
	touch $@

demo: setup
	$(VENV)/bin/worldsim scenes
	$(VENV)/bin/worldsim render --scene Reacher-v5 --policy scripted --seed 0 --out demo/reacher.mp4
	$(VENV)/bin/worldsim render --scene bounce --policy scripted --seed 0 --out demo/bounce.mp4

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo .pytest_cache
