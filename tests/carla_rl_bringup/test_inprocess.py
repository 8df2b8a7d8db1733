"""One builder of in-process envs (carla_rl_bringup.inprocess), with the ROS stacks' seed rule: env i's simulator
gets seed + sim.seed + i and the env seed + i, as config/stacks.yaml gives the simulator and env nodes of env i.
``carla-rl train --inprocess``, ``carla-rl evaluate --inprocess`` and ``gymnasium.make("carla_rl/Driving-v0")``
build exactly those envs.

What a simulator was seeded with shows in its generator: a simulator built with the stack's seed for env i
must be in the same state (a simulator of another seed is not: the tests can fail)."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium
import numpy as np
import yaml
from stable_baselines3.common.vec_env import DummyVecEnv

import carla_rl_env  # noqa: F401  (registers carla_rl/Driving-v0)
from carla_rl_bringup.inprocess import inprocess_env, inprocess_env_fns
from carla_rl_bringup.stacks import expand, load_stacks
from carla_rl_env.settings import load_env_config
from carla_rl_sim.core import load_simulator

SEED, SIM_SEED, NUM_ENVS = 3, 7, 3


def stack_seeds(stack: str, num_envs: int, seed: int, sim_seed: int) -> list[dict]:
    """Per env of the embedded ``stack``: its simulator node's seed, its env node's seed, index and env count."""
    args = {"stack": stack, "num_envs": num_envs, "seed": seed, "sim_seed": sim_seed}
    nodes = expand(load_stacks(), {name: str(value) for name, value in args.items()})
    sims = [n.parameters["seed"] for n in nodes if n.name == "sim"]
    envs = [n.parameters for n in nodes if n.name == "carla_rl_env"]
    return [{"sim": s, "env": e["seed"], "offset": e["env_index"], "stride": e["num_envs"]} for s, e in zip(sims, envs)]


def simulator_state(config: dict, seed: int) -> dict:
    """The generator state of a fresh simulator of ``config`` seeded ``seed``."""
    sim = config["sim"]
    built = load_simulator(sim["town"], config["env"]["objects_file"], sim["fixed_delta_seconds"], sim["traffic"], seed)
    return built.rng.bit_generator.state


def scenario_state(seed: int) -> dict:
    return np.random.default_rng(seed).bit_generator.state


def env_config(sim_seed: int = SIM_SEED) -> dict:
    return load_env_config([], {"sim": {"seed": sim_seed}})


def test_the_builder_seeds_env_i_as_the_ros_stack_seeds_env_i():
    config = env_config()
    expected = stack_seeds("drive", NUM_ENVS, SEED, SIM_SEED)
    assert [e["sim"] for e in expected] == [SEED + SIM_SEED + i for i in range(NUM_ENVS)]
    envs = [make() for make in inprocess_env_fns(config, NUM_ENVS, SEED, split=True)]
    for env, stack in zip(envs, expected):
        assert env.sim.rng.bit_generator.state == simulator_state(config, stack["sim"])
        assert env.scenarios.rng.bit_generator.state == scenario_state(stack["env"])
        assert (env.scenarios.offset, env.scenarios.stride) == (stack["offset"], stack["stride"])
    # the rule the benchmarks had (seed + i, without sim.seed) gives other simulators
    assert envs[1].sim.rng.bit_generator.state != simulator_state(config, SEED + 1)
    # unsplit (training), every env runs the whole suite; towns: env i drives towns[i % len]
    mixed = inprocess_env_fns(config, 2, SEED, towns=["RLTown02", "RLTown01"])
    first, second = mixed[0](), mixed[1]()
    assert (first.scenarios.offset, first.scenarios.stride) == (0, 1) == (second.scenarios.offset, 1)
    assert (first.sim.network.name, second.sim.network.name) == ("RLTown02", "RLTown01")
    assert second.sim.rng.bit_generator.state == simulator_state(config, SEED + SIM_SEED + 1)


def test_gymnasium_make_is_env_0_of_the_stack(tmp_path):
    path = tmp_path / "sim_seed.yaml"
    path.write_text(yaml.safe_dump({"sim": {"seed": SIM_SEED}}))
    env = gymnasium.make("carla_rl/Driving-v0", config=str(path), seed=SEED).unwrapped
    (stack, *_) = stack_seeds("drive", 1, SEED, SIM_SEED)
    config = env_config()
    assert env.sim.rng.bit_generator.state == simulator_state(config, stack["sim"])
    assert env.scenarios.rng.bit_generator.state == scenario_state(stack["env"])
    built = inprocess_env(config, SEED)
    assert env.sim.rng.bit_generator.state == built.sim.rng.bit_generator.state


def carla_rl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_train_inprocess_seeds_its_envs_as_the_train_stack(tmp_path):
    """The checkpoint of a run shorter than an episode saves each env's random sources as the env was built
    (exact resume records them before the episode's reset): they must be the stack's seeds."""
    from carla_rl_agents.checkpoints import _read_state, latest_checkpoint

    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        yaml.safe_dump(
            {
                "algo_kwargs": {"n_steps": 16, "batch_size": 32, "n_epochs": 1},
                "policy": {"net_arch": [16]},
                "sim": {"seed": SIM_SEED},
                "train": {"checkpoint_every": 1, "device": "cpu"},
            }
        )
    )
    run = tmp_path / "run"
    carla_rl(
        "train", "--inprocess", "--config", str(tiny), "--num-envs", "2", "--seed", str(SEED),
        "--total-steps", "32", "--run-dir", str(run),
    )  # fmt: skip
    saved = _read_state(latest_checkpoint(run))["resume"]["env"]["envs"]
    config = env_config()
    for env, stack in zip(saved, stack_seeds("train", 2, SEED, SIM_SEED), strict=True):
        assert env["sources"]["episode"] == 0  # the first episode: the sources are the built env's
        assert env["sources"]["sim"] == simulator_state(config, stack["sim"])
        assert env["sources"]["scenarios"]["rng"] == scenario_state(stack["env"])


def test_evaluate_inprocess_runs_the_builders_envs(repo, tmp_path):
    """Two short one_turn episodes with 40 vehicles of the suite's traffic (placed from the simulator's
    generator) on two envs: evaluate --inprocess scores them exactly as the builder's split envs do, and
    another seed scores them otherwise."""
    from carla_rl_agents.checkpoints import check_checkpoint, load_policy
    from carla_rl_agents.evaluation import evaluate
    from carla_rl_env.scenarios import resolve_suite

    checkpoint = repo / "models" / "ppo_rltown01.ckpt"
    data = yaml.safe_load(resolve_suite("one_turn", "RLTown01").read_text())
    data["episodes"] = [{**e, "traffic": 40} for e in data["episodes"] if e["id"] in ("one_turn-07", "one_turn-10")]
    suite = tmp_path / "busy.yaml"
    suite.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    carla_rl(
        "evaluate", "--inprocess", "--checkpoint", str(checkpoint), "--suite", str(suite), "--num-envs", "2",
        "--seed", str(SEED), "--json", "--out", str(out),
    )  # fmt: skip
    scored = json.loads((out / "RLTown01-busy" / "results.json").read_text())["episodes"]

    config = check_checkpoint(checkpoint)["config"]
    config["env"]["scenario"]["suite"] = str(suite.resolve())

    def records(seed: int) -> list[dict]:
        env = DummyVecEnv(inprocess_env_fns(config, 2, seed, split=True))
        return json.loads(json.dumps(evaluate(load_policy(checkpoint, env), env, 2)["records"]))

    assert scored == records(SEED)
    assert scored != records(SEED + 1)
