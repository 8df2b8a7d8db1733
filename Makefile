# The two commands a newcomer needs: `make demo` and `make test`. Every target depends on setup.
VENV := .venv
BIN := $(VENV)/bin
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
# every Python file we ship or run (ruff's settings: pyproject.toml)
LINT_PATHS := src tests benchmarks launch scripts tools

.PHONY: setup demo test lint bench towns clean

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/carla-rl demo

test: setup
	$(BIN)/python -m pytest tests -q

lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

bench: setup
	$(BIN)/carla-rl bench

towns: setup
	$(BIN)/python tools/towns/generate.py

clean:
	rm -rf build $(VENV) runs
