# The two commands a newcomer needs: `make demo` and `make test`. Every target depends on setup.
VENV := .venv
BIN := $(VENV)/bin
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo test test-fast bench lint clean towns

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/carla-rl demo

test: setup
	$(BIN)/python -m pytest tests -q

bench: setup
	$(BIN)/carla-rl bench

towns: setup
	$(BIN)/python -m carla_rl_sim.towns.generate

clean:
	rm -rf build $(VENV) runs
