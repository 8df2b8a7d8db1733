"""Evaluation: per-episode records from the step infos, the summary's rates and means, the per-env episode
split, fallbacks for envs that report less, Markdown and JSON results, SB3 models and policies as drivers."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from carla_rl_agents.evaluation import evaluate, write_results
from carla_rl_agents.models import build_model
from carla_rl_agents.settings import load_run_config

th.set_num_threads(1)


class ScriptedEnv(gym.Env):
    """Plays scripted episodes whatever the actions: the car moves 1 m along x per step at ``speed`` m/s.

    Each script entry is ``(length, termination_reason, terminal info extras)``; after the last entry the
    script starts over. With ``report=False`` the infos carry no pose, speed or episode totals.
    """

    observation_space = spaces.Dict({"measurements": spaces.Box(-np.inf, np.inf, (3,), np.float32)})
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(
        self, script: list[tuple[int, str, dict]], start_x: float = 0.0, speed: float = 1.0, report: bool = True
    ):
        self.script, self.start_x, self.speed, self.report = script, start_x, speed, report
        self.episode = -1

    def _obs(self) -> dict[str, np.ndarray]:
        return {"measurements": np.array([self.x, self.speed, self.t], np.float32)}

    def _info(self) -> dict:
        return {"ego_pose": np.array([self.x, 0.0, 0.0]), "speed": self.speed} if self.report else {}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.episode, self.x, self.t = self.episode + 1, self.start_x, 0
        return self._obs(), self._info()

    def step(self, action):
        length, reason, extras = self.script[self.episode % len(self.script)]
        self.x, self.t = self.x + 1.0, self.t + 1
        done = self.t >= length
        info = {**self._info(), "termination_reason": reason if done else ""}
        if done and self.report:
            info.update(extras)
        return self._obs(), 1.0, done and reason != "time_limit", done and reason == "time_limit", info


class ConstantDriver:
    """Full throttle, straight; records how it was called."""

    def __init__(self):
        self.calls: list[tuple[np.ndarray | None, bool]] = []

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        self.calls.append((None if episode_start is None else np.array(episode_start), deterministic))
        return np.tile([1.0, 0.0], (len(observation["measurements"]), 1)).astype(np.float32), state


SCRIPTS = [
    [
        (4, "goal_reached", {"route_completion": 1.0, "collisions": 0, "lane_invasions": 1}),
        (3, "goal_reached", {"route_completion": 1.0, "collisions": 0, "lane_invasions": 0}),
    ],
    [
        (2, "collision", {"route_completion": 0.25, "collisions": 1, "lane_invasions": 0}),
        (6, "time_limit", {"route_completion": 0.5, "collisions": 0, "lane_invasions": 2}),
    ],
]


def scripted_env(report: bool = True) -> DummyVecEnv:
    return DummyVecEnv(
        [  # env i plays the suite's episodes i, i + 2, ...: env 0 has two of three
            lambda: ScriptedEnv(SCRIPTS[1], start_x=100.0, speed=1.0, report=report),
            lambda: ScriptedEnv(SCRIPTS[0], start_x=0.0, speed=2.0, report=report),
        ]
    )


def test_records_and_summary_from_the_step_infos():
    driver = ConstantDriver()
    result = evaluate(driver, scripted_env(), episodes=3)
    records, summary = result["records"], result["summary"]
    # env 0 plays 2 episodes, env 1 plays 1 (ceil((episodes - i) / n_envs)); records in order of completion
    assert [(r["env"], r["length"], r["termination_reason"]) for r in records] == [
        (0, 2, "collision"),
        (1, 4, "goal_reached"),
        (0, 6, "time_limit"),
    ]
    first = records[0]
    assert first == {
        "env": 0,
        "return": 2.0,
        "length": 2,
        "success": False,
        "termination_reason": "collision",
        "route_completion": 0.25,
        "collisions": 1,
        "lane_invasions": 0,
        "distance": 2.0,
        "mean_speed": 1.0,
    }
    assert [r["distance"] for r in records] == [2.0, 4.0, 6.0]  # from the reset pose: the first step counts
    assert summary["episodes"] == 3
    assert summary["success_rate"] == pytest.approx(1 / 3)
    assert summary["route_completion"] == pytest.approx((0.25 + 1.0 + 0.5) / 3)
    assert summary["collisions_per_km"] == pytest.approx(1 / 0.012)
    assert summary["lane_invasions_per_km"] == pytest.approx(3 / 0.012)
    assert summary["mean_speed"] == pytest.approx((4 * 2.0 + 8 * 1.0) / 12)  # over all steps
    assert summary["distance_km"] == pytest.approx(0.012)
    assert summary["mean_return"] == pytest.approx(4.0)
    assert driver.calls[0][0].all() and driver.calls[0][1] is True  # episode starts, deterministic


def test_envs_that_report_less_give_none_and_count_collision_endings():
    summary_records = evaluate(ConstantDriver(), scripted_env(report=False), episodes=4, deterministic=False)
    records, summary = summary_records["records"], summary_records["summary"]
    assert len(records) == 4 and sum(r["collisions"] for r in records) == 1  # the episode that ended in one
    assert all(r["lane_invasions"] is None and r["route_completion"] is None for r in records)
    assert all(r["distance"] is None and r["mean_speed"] is None for r in records)
    assert summary["success_rate"] == pytest.approx(0.5)
    assert summary["route_completion"] is None and summary["mean_speed"] is None
    assert summary["collisions_per_km"] is None and summary["lane_invasions_per_km"] is None


def test_write_results_writes_json_and_markdown_tables(tmp_path):
    result = evaluate(ConstantDriver(), scripted_env(), episodes=3)
    json_path, md_path = write_results(result["summary"], result["records"], tmp_path / "eval")
    saved = json.loads(json_path.read_text())
    assert saved == {"summary": result["summary"], "episodes": result["records"]}
    markdown = md_path.read_text()
    assert "| success rate | 0.333 |" in markdown and "| collisions per km | 83.333 |" in markdown
    assert "| 0 | 0 | 2.000 | 2 | no | collision | 0.250 | 1 | 0 | 2.000 | 1.000 |" in markdown
    none_result = evaluate(ConstantDriver(), scripted_env(report=False), episodes=2)
    write_results(none_result["summary"], none_result["records"], tmp_path / "none")
    assert "| route completion | n/a |" in (tmp_path / "none" / "results.md").read_text()


def test_sb3_models_and_policies_drive_the_evaluation():
    config = load_run_config([], {"algo": "ppo", "policy": {"net_arch": [8]}, "train": {"device": "cpu"}})
    model = build_model(config, scripted_env())
    for driver in (model, model.policy):
        summary = evaluate(driver, scripted_env(), episodes=2)["summary"]
        assert summary["episodes"] == 2 and 0.0 <= summary["success_rate"] <= 1.0
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(model, scripted_env(), episodes=0)
