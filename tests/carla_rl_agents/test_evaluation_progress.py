"""The evaluation's progress bar (tqdm on stderr): in a log, one whole line per finished episode with the count,
the ETA and the successes so far; nothing at all unless asked for."""

from __future__ import annotations

import re

import pytest
import torch as th
import yaml
from stable_baselines3.common.vec_env import DummyVecEnv

from carla_rl_agents.checkpoints import load_policy, read_meta
from carla_rl_agents.evaluation import evaluate
from carla_rl_env.inprocess import InProcessEnv
from carla_rl_sim.core import load_simulator

th.set_num_threads(1)


@pytest.fixture
def two_episode_env(repo, tmp_path):
    """The committed model's env on the first two episodes of RLTown01's straight suite, in-process."""
    suite = yaml.safe_load((repo / "config" / "suites" / "RLTown01" / "straight.yaml").read_text())
    suite["episodes"] = suite["episodes"][:2]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(suite))
    checkpoint = repo / "models" / "ppo_rltown01.ckpt"
    config = read_meta(checkpoint)["config"]
    config["env"]["scenario"]["suite"] = str(path)
    env = DummyVecEnv([lambda: InProcessEnv(config, load_simulator("RLTown01", "", 0.05, 0, 0))])
    yield load_policy(checkpoint, env), env
    env.close()


def test_a_log_gets_one_line_per_finished_episode(two_episode_env, capsys):
    model, env = two_episode_env
    result = evaluate(model, env, 2, progress=True)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and all(lines), repr(err)  # whole lines, no redraws, no blank line
    assert len(lines) == 3, lines  # the start, then each finished episode
    assert re.match(r"evaluate:\s+0%.*\| 0/2 ", lines[0]), lines[0]
    successes = sum(r["success"] for r in result["records"])
    assert re.match(rf"evaluate:\s+100%.*\| 2/2 \[.*<00:00.*{successes} succeeded\]$", lines[2]), lines[2]
    assert "warn" not in err.lower()


def test_no_bar_unless_asked(two_episode_env, capsys):
    model, env = two_episode_env
    evaluate(model, env, 2)
    assert capsys.readouterr().err == ""
