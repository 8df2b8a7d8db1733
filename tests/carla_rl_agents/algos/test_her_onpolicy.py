"""On-policy HER: ego-frame relabelling, rewards, segment filtering, goal-step sampling, pose tracking, learning."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from carla_rl_agents.algos import OnPolicyHER
from carla_rl_agents.algos.her_onpolicy import (
    EgoTrace,
    EgoTraceRecorder,
    HindsightSegment,
    episode_segment_starts,
    goal_step_probabilities,
    sample_goal_steps,
)
from carla_rl_common.geometry import world_to_ego as _world_to_ego

th.set_num_threads(1)


def world_to_ego(points: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Points in the ego frames of ``(..., 3)`` poses, as HER relabels goals."""
    return _world_to_ego(points, poses[..., 0], poses[..., 1], poses[..., 2])


GOAL_SCALE = 10.0
ROUTE_INDICES = (1, 2, 3)  # the command one-hot of PointGoalEnv's measurements


class PointGoalEnv(gym.Env):
    """A point "car" driving to a goal on a plane, with the CARLA env's goal interface.

    Observations: ``goal`` = ego-frame goal / GOAL_SCALE, ``measurements`` = [speed, command one-hot
    (left, straight, right)]. Infos carry ``ego_pose`` = [x, y, yaw] and ``speed`` after the step; the reset
    info carries the start pose unless ``reset_pose=False``.
    """

    observation_space = spaces.Dict(
        {
            "goal": spaces.Box(-5.0, 5.0, (2,), np.float32),
            "measurements": spaces.Box(-np.inf, np.inf, (4,), np.float32),
        }
    )
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)  # acceleration, yaw rate

    def __init__(self, reset_pose: bool = True):
        self.reset_pose = reset_pose

    def _obs(self) -> dict[str, np.ndarray]:
        goal = world_to_ego(self.goal_position, self.pose) / GOAL_SCALE
        command = np.zeros(3, np.float32)
        command[0 if goal[1] > 0.2 else 2 if goal[1] < -0.2 else 1] = 1.0
        return {
            "goal": np.clip(goal, -5.0, 5.0).astype(np.float32),
            "measurements": np.concatenate([[self.speed], command]).astype(np.float32),
        }

    def _info(self) -> dict:
        return {"ego_pose": self.pose.copy(), "speed": self.speed}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.pose = np.array([*self.np_random.uniform(-5, 5, 2), self.np_random.uniform(-np.pi, np.pi)])
        angle = self.np_random.uniform(-np.pi, np.pi)
        self.goal_position = self.pose[:2] + 15.0 * np.array([np.cos(angle), np.sin(angle)])
        self.speed, self.t = 1.0, 0
        return self._obs(), self._info() if self.reset_pose else {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self.speed = float(np.clip(self.speed + 0.5 * action[0], 0.0, 3.0))
        self.pose[2] += 0.5 * float(action[1])
        self.pose[:2] += self.speed * np.array([np.cos(self.pose[2]), np.sin(self.pose[2])])
        self.t += 1
        distance = float(np.linalg.norm(self.goal_position - self.pose[:2]))
        reached = distance < 2.0
        reward = 1.0 if reached else -0.01 * distance
        return self._obs(), reward, reached, self.t >= 40, self._info()


def make_model(**kwargs) -> OnPolicyHER:
    params = dict(n_steps=24, batch_size=24, n_epochs=1, goal_scale=GOAL_SCALE, route_indices=ROUTE_INDICES)
    params.update(kwargs)
    model = OnPolicyHER("MultiInputPolicy", DummyVecEnv([PointGoalEnv]), seed=0, device="cpu", **params)
    model.set_logger(configure(folder=None, format_strings=[]))
    return model


def straight_line_poses(n: int, heading: float = 0.5, speed: float = 2.0) -> np.ndarray:
    """Poses at t = 0 .. n-1 of a drive along ``heading`` at ``speed`` m/s from (3, -1), one step per second."""
    t = np.arange(n)[:, None]
    xy = np.array([3.0, -1.0]) + speed * t * np.array([np.cos(heading), np.sin(heading)])
    return np.concatenate([xy, np.full((n, 1), heading)], axis=1)


def test_world_to_ego_is_x_forward_y_left() -> None:
    pose = np.array([1.0, 1.0, math.pi / 2])  # facing +y
    assert np.allclose(world_to_ego(np.array([1.0, 3.0]), pose), [2.0, 0.0])
    assert np.allclose(world_to_ego(np.array([0.0, 1.0]), pose), [0.0, 1.0])  # -x is on the left


def test_relabel_straight_line() -> None:
    model = make_model()
    length, goal_step = 12, 11
    poses = straight_line_poses(length + 1)  # obs poses 0 .. 11 and the pose reached at goal_step + 1
    rng = np.random.default_rng(0)
    observations = {
        "goal": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
        "measurements": np.tile(np.array([2.0, 0.0, 1.0, 0.0], np.float32), (length, 1)),
    }
    original = {key: value.copy() for key, value in observations.items()}

    relabelled = model.relabel(observations, poses[:length], poses[goal_step + 1, :2])

    # On a straight line the goal is straight ahead, 2 m per step away: (2 * (12 - t), 0) / goal_scale.
    expected = np.stack([2.0 * (goal_step + 1 - np.arange(length)), np.zeros(length)], axis=1) / GOAL_SCALE
    assert np.allclose(relabelled["goal"], expected, atol=1e-5)
    assert np.all(relabelled["measurements"][:, 1:4] == 0.0)
    assert np.all(relabelled["measurements"][:, 0] == 2.0)
    for key in observations:  # the rollout's own observations are untouched
        assert np.array_equal(observations[key], original[key])


def test_hindsight_rewards() -> None:
    model = make_model()
    rewards = model.hindsight_rewards(np.array([0.0, 5.0, 25.0, 30.0, 12.5]) / 3.6)  # km/h in m/s
    assert np.allclose(rewards, [0.0, 0.2, 1.0, 1.0, 500.0])  # the seed's min(speed_kmh / 25, 1)
    assert model.her_speed_scale == pytest.approx(25.0 / 3.6)


def test_relabel_sets_the_goal_distance_to_the_driven_path_in_every_stacked_frame() -> None:
    # measurements of two stacked frames of [speed, command x3, goal distance / 5 m]
    model = make_model()  # relabel() only needs the layout and the goal space
    model.route_indices, model.goal_distance_index, model.goal_distance_scale, model.frame_size = [1, 2, 3], 4, 5.0, 5
    length, goal_step = 6, 5
    poses = straight_line_poses(length + 1)  # 2 m per step
    frame = np.array([2.0, 0.0, 1.0, 0.0, 99.0], np.float32)
    observations = {
        "goal": np.zeros((length, 2), np.float32),
        "measurements": np.tile(np.concatenate([frame, frame]), (length, 1)),
    }
    relabelled = model.relabel(observations, poses[:length], poses[goal_step + 1, :2])
    frames = relabelled["measurements"].reshape(length, 2, 5)
    to_goal = 2.0 * (goal_step + 1 - np.arange(length))  # 12, 10, ..., 2 m
    assert np.allclose(frames[:, 1, 4], to_goal / 5.0)  # the newest frame
    assert np.allclose(frames[:, 0, 4], np.r_[to_goal[0], to_goal[:-1]] / 5.0)  # one step older (clamped)
    assert np.all(frames[:, :, 1:4] == 0.0) and np.all(frames[:, :, 0] == 2.0)


def test_layout_outside_the_measurements_is_refused() -> None:
    with pytest.raises(ValueError, match="outside a frame"):
        make_model(route_indices=(1, 7))
    with pytest.raises(ValueError, match="does not divide"):
        make_model(frame_size=3)


def test_episode_segment_starts() -> None:
    starts = episode_segment_starts(np.array([0, 0, 1, 0, 0, 1, 0], np.float32))
    assert starts.tolist() == [0, 0, 2, 2, 2, 5, 5]


def test_short_and_slow_segments_are_discarded() -> None:
    model = make_model(num_virtual_goals=200)
    n_steps = 40
    episode_starts = np.zeros((n_steps, 2), np.float32)
    episode_starts[[0, 30], 0] = 1.0  # env 0: goal steps 30..38 give segments of 1..9 steps
    episode_starts[0, 1] = 1.0
    speeds = np.stack([np.full(n_steps, 2.0), np.full(n_steps, 0.05)], axis=1)  # env 1 too slow
    speeds[:12, 0] = 0.0  # env 0 stands still first: segments 0..9 to 0..11 are long enough, but at 0 m/s
    segments = model.hindsight_segments(episode_starts, speeds)

    rng = np.random.default_rng(0)  # the model's sampler, seeded with the model's seed
    draws = sample_goal_steps(n_steps, 200, model.beta, rng)
    starts = np.where(draws >= 30, 30, 0)
    kept = [
        HindsightSegment(0, int(s), int(j))
        for s, j in zip(starts, draws, strict=True)
        if j - s + 1 >= 10 and speeds[s : j + 1, 0].mean() >= 0.1
    ]
    assert segments == kept
    assert all(s.env == 0 and len(s) >= 10 for s in segments)
    assert any(30 <= j <= 38 for j in draws) and any(9 <= j <= 11 for j in draws)  # short and slow ones drawn
    assert not any(s.start == 30 and s.goal_step < 39 for s in segments)
    assert all(s.goal_step >= 12 for s in segments if s.start == 0)


def test_goal_step_sampling_favours_later_steps() -> None:
    n_steps = 20
    draws = sample_goal_steps(n_steps, 200_000, beta=1.0, rng=np.random.default_rng(0))
    frequencies = np.bincount(draws, minlength=n_steps) / len(draws)
    probabilities = goal_step_probabilities(n_steps, beta=1.0)
    assert probabilities[-1] / probabilities[0] == pytest.approx(math.e)
    assert np.allclose(frequencies, probabilities, atol=3e-3)
    assert frequencies[-5:].sum() > 1.5 * frequencies[:5].sum()


@pytest.mark.parametrize("reset_pose", [True, False])
def test_recorder_gives_the_pose_of_each_observation(reset_pose: bool) -> None:
    """The goal in each observation, recomputed from the recorded pose, matches the env's own goal."""
    venv = DummyVecEnv([lambda: PointGoalEnv(reset_pose=reset_pose)] * 2)
    venv.seed(0)
    obs = venv.reset()
    first_pose = np.array([info.get("ego_pose", np.full(3, np.nan)) for info in venv.reset_infos])
    recorder = EgoTraceRecorder(venv, first_pose)
    goals, observed, starts = [], [], [np.ones(2, bool)]
    rng = np.random.default_rng(0)
    for _ in range(90):  # episodes end after 40 steps or at the goal
        goals.append(np.array(venv.get_attr("goal_position")))
        observed.append(obs["goal"])
        obs, _, dones, _ = recorder.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32))
        starts.append(dones)
    trace = recorder.trace()
    episode_start = np.array(starts[:-1])
    assert episode_start[1:].any()
    recomputed = np.clip(world_to_ego(np.array(goals), trace.obs_poses) / GOAL_SCALE, -5.0, 5.0)  # as the env
    if reset_pose:
        assert np.allclose(recomputed, np.array(observed), atol=1e-5)
    else:  # episode starts fall back to the pose after the first step
        assert np.allclose(recomputed[~episode_start], np.array(observed)[~episode_start], atol=1e-5)
        assert np.allclose(trace.obs_poses[episode_start], trace.next_poses[episode_start])


def _hand_made_rollout(model: OnPolicyHER) -> tuple[np.ndarray, EgoTrace]:
    """One env, 24 steps on a straight line at 2 m/s; episodes start at steps 0 and 14; log-prob of step t = -t/10."""
    n_steps = model.n_steps
    buffer = model.rollout_buffer
    buffer.reset()
    poses = straight_line_poses(n_steps + 1)
    log_probs = -np.arange(n_steps, dtype=np.float32) / 10
    rng = np.random.default_rng(1)
    for t in range(n_steps):
        obs = {"goal": rng.uniform(-1, 1, (1, 2)), "measurements": np.array([[2.0, 0.0, 1.0, 0.0]])}
        buffer.add(
            obs,
            rng.uniform(-1, 1, (1, 2)).astype(np.float32),
            np.zeros(1),
            np.array([t in (0, 14)]),
            th.zeros(1),
            th.tensor([log_probs[t]]),
        )
    trace = EgoTrace(poses[:n_steps, None], poses[1:, None], np.full((n_steps, 1), 2.0))
    return log_probs, trace


@pytest.mark.parametrize("importance_weighting", ["ratio", "per_decision"])
def test_hindsight_columns_of_a_hand_made_rollout(importance_weighting: str) -> None:
    # the raw columns: advantages not normalised per group (test_groups_are_normalised_and_weighted does that)
    model = make_model(
        num_virtual_goals=6,
        gae_lambda=1.0,
        importance_weighting=importance_weighting,
        her_reward_scale=0.01,
        normalize_groups=False,
    )
    behaviour_log_probs, trace = _hand_made_rollout(model)
    buffer = model.rollout_buffer
    model.add_hindsight(buffer, trace)
    segments = buffer.hindsight_segments
    assert segments and all(s.start in (0, 14) and len(s) >= 10 for s in segments)
    next(buffer.get())  # flattens: the 24 rollout samples, then the segments' samples in order

    offset = model.n_steps
    advantages, log_ratios = [], []
    for segment in segments:
        rows = slice(offset, offset + len(segment))
        steps = np.arange(segment.start, segment.goal_step + 1)
        offset += len(segment)
        goals = buffer.observations["goal"][rows]
        expected_goals = np.stack([2.0 * (segment.goal_step + 1 - steps), np.zeros(len(steps))], 1) / GOAL_SCALE
        assert np.allclose(goals, expected_goals, atol=1e-5)
        assert np.all(buffer.observations["measurements"][rows, 1:4] == 0.0)
        assert np.array_equal(buffer.actions[rows], buffer.actions[steps])

        # Rewards 2 m/s / 6.94 m/s then 500 at the goal step, terminal there (lambda = 1: Monte-Carlo returns),
        # in value units: times her_reward_scale.
        rewards = np.full(len(steps), 2.0 / (25.0 / 3.6))
        rewards[-1] = 500.0
        rewards *= 0.01
        expected_returns = [sum(model.gamma**k * r for k, r in enumerate(rewards[i:])) for i in range(len(rewards))]
        assert np.allclose(buffer.returns[rows, 0], expected_returns, rtol=1e-5)
        obs = {key: th.as_tensor(value[rows]) for key, value in buffer.observations.items()}
        with th.no_grad():
            values, relabelled_log_probs, _ = model.policy.evaluate_actions(obs, th.as_tensor(buffer.actions[rows]))
        assert np.allclose(buffer.values[rows, 0], values.flatten().numpy(), atol=1e-5)
        if importance_weighting == "ratio":  # the extra columns carry the behaviour log-probs
            assert np.array_equal(buffer.log_probs[rows, 0], behaviour_log_probs[steps])
            assert np.allclose(buffer.advantages[rows, 0], buffer.returns[rows, 0] - buffer.values[rows, 0], atol=1e-4)
        else:
            assert np.allclose(buffer.log_probs[rows, 0], relabelled_log_probs.numpy(), atol=1e-5)
            advantages.append((buffer.returns[rows, 0] - buffer.values[rows, 0], buffer.advantages[rows, 0]))
            log_ratios.append(np.cumsum(relabelled_log_probs.numpy() - behaviour_log_probs[steps]))
    assert offset == len(buffer.values)

    if importance_weighting == "per_decision":  # advantage * prod(rho), normalised to mean 1 at each tau
        for tau in range(max(len(s) for s in segments)):
            present = [i for i, s in enumerate(segments) if len(s) > tau]
            products = np.exp([log_ratios[i][tau] for i in present])
            for i, product in zip(present, products, strict=True):
                raw, weighted = advantages[i][0][tau], advantages[i][1][tau]
                assert weighted == pytest.approx(raw * product / products.mean(), rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("her_weight", [0.5, None])
def test_groups_are_normalised_and_weighted(her_weight: float | None) -> None:
    """The rollout's and the relabelled advantages are normalised separately; the relabelled ones then weigh
    her_weight times the rollout's in total. Values and returns stay as computed."""
    columns = {}
    for groups in (False, True):
        model = make_model(num_virtual_goals=6, normalize_groups=groups, her_weight=her_weight)
        _, trace = _hand_made_rollout(model)
        buffer = model.rollout_buffer
        buffer.advantages[:] = np.linspace(-3.0, 5.0, model.n_steps)[:, None]  # the rollout's own (GAE) advantages
        model.add_hindsight(buffer, trace)
        next(buffer.get())
        columns[groups] = (buffer.advantages[:, 0].copy(), buffer.returns[:, 0].copy(), len(buffer.hindsight_segments))
    (raw, raw_returns, segments), (weighted, returns, same_segments) = columns[False], columns[True]
    assert segments == same_segments and segments > 0  # the same draws (the sampler is seeded)
    assert np.array_equal(raw_returns, returns)
    n = 24  # the rollout's samples come first
    assert weighted[:n].mean() == pytest.approx(0.0, abs=1e-5) and weighted[:n].std() == pytest.approx(1.0, rel=1e-4)
    assert np.allclose(weighted[:n], (raw[:n] - raw[:n].mean()) / raw[:n].std(), atol=1e-5)
    relabelled = (raw[n:] - raw[n:].mean()) / raw[n:].std()
    factor = 1.0 if her_weight is None else her_weight * n / len(relabelled)
    assert np.allclose(weighted[n:], factor * relabelled, atol=1e-5)


def test_relabelled_samples_do_not_swamp_the_rollout() -> None:
    """Regression (HER did not learn on `straight`): with the seed's 500 goal reward taken as it is, the
    relabelled returns reached 500 next to the env's returns of about 1, so (a) their value loss ruled the
    clipped gradient and (b) SB3's per-minibatch normalisation turned the rollout's advantages into a near
    constant: the env's reward no longer reached the policy. Now the relabelled value targets stay within
    her_reward_scale * her_reward_goal and, normalised over the whole batch as a minibatch would be, the
    rollout's advantages keep their spread and their order."""

    def batch(**kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        env = make_vec_env(PointGoalEnv, n_envs=2, seed=0)
        model = OnPolicyHER(
            "MultiInputPolicy",
            env,
            n_steps=64,
            batch_size=64,
            n_epochs=1,
            goal_scale=GOAL_SCALE,
            route_indices=ROUTE_INDICES,
            seed=0,
            device="cpu",
            **kwargs,
        )
        model.learn(total_timesteps=128)
        buffer = model.rollout_buffer
        assert buffer.hindsight_segments
        real = buffer.advantages[:128, 0]
        normalised = (buffer.advantages - buffer.advantages.mean()) / (buffer.advantages.std() + 1e-8)
        return real, normalised[:128, 0], buffer.returns[128:, 0], model.her_reward_scale * model.her_reward_goal

    real, normalised, relabelled_returns, bound = batch()
    assert np.abs(relabelled_returns).max() <= bound * 1.01
    assert normalised.std() > 0.5
    assert np.corrcoef(real, normalised)[0, 1] > 0.99

    # the seed's scales as they were (the behaviour before the fix): the rollout's advantages are flattened
    _, old_normalised, old_returns, _ = batch(her_reward_scale=1.0, normalize_groups=False)
    assert old_returns.max() > 100.0 and old_normalised.std() < 0.05


@pytest.mark.parametrize("importance_weighting", ["ratio", "per_decision"])
def test_learn_runs_with_hindsight_samples(importance_weighting: str) -> None:
    env = make_vec_env(PointGoalEnv, n_envs=2, seed=0)
    model = OnPolicyHER(
        "MultiInputPolicy",
        env,
        n_steps=64,
        batch_size=64,
        n_epochs=2,
        goal_scale=GOAL_SCALE,
        route_indices=ROUTE_INDICES,
        importance_weighting=importance_weighting,
        seed=0,
        device="cpu",
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    logged = model.logger.name_to_value
    for key in ("train/value_loss", "train/policy_gradient_loss", "train/entropy_loss", "train/approx_kl"):
        assert np.isfinite(logged[key]), key
    assert any(not th.equal(b, p) for b, p in zip(before, model.policy.parameters(), strict=True))

    buffer = model.rollout_buffer  # the last rollout, flattened: 2 x 64 samples, then the hindsight ones
    assert buffer.hindsight_segments
    assert len(buffer.values) == 128 + sum(len(s) for s in buffer.hindsight_segments)
    if importance_weighting == "ratio":
        offset = 128
        for segment in buffer.hindsight_segments:
            original = segment.env * 64 + np.arange(segment.start, segment.goal_step + 1)
            extra = np.arange(offset, offset + len(segment))
            offset += len(segment)
            assert np.array_equal(buffer.log_probs[extra], buffer.log_probs[original])
            assert np.all(buffer.observations["measurements"][extra, 1:4] == 0.0)


def test_requires_goal_in_dict_observations() -> None:
    with pytest.raises(ValueError, match="'target' key"):
        OnPolicyHER("MultiInputPolicy", DummyVecEnv([PointGoalEnv]), goal_key="target")
