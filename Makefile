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

# The shipped default world (Reacher-v5) beside MuJoCo: same initial state, same actions, 240 steps.
demo: setup
	$(VENV)/bin/worldsim rollout --scene Reacher-v5 --steps 240 --policy smooth --seed 0 --side-by-side --out demo/reacher.mp4
	$(VENV)/bin/worldsim rollout --scene InvertedPendulum-v5 --steps 240 --policy smooth --seed 0 --side-by-side --out demo/pendulum.mp4

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo .pytest_cache
