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

# Each shipped world beside MuJoCo (same initial state, same actions) where it is valid: Reacher over
# four of its 50-step episodes under the scripted reaching controller, the pendulum under its balancing
# controller (under random actions the real pole falls within about 10 steps), bounce for 240 steps.
demo: setup
	$(VENV)/bin/worldsim rollout --scene Reacher-v5 --steps 50 --episodes 4 --policy scripted --seed 0 --side-by-side --quiet --force --out demo/reacher.mp4
	$(VENV)/bin/worldsim rollout --scene InvertedPendulum-v5 --steps 240 --policy scripted --seed 0 --side-by-side --quiet --force --out demo/pendulum.mp4
	$(VENV)/bin/worldsim rollout --scene bounce --steps 240 --policy smooth --seed 0 --side-by-side --quiet --force --out demo/bounce.mp4

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo .pytest_cache
