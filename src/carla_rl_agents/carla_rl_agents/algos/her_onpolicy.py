"""On-policy hindsight experience replay on top of PPO (``OnPolicyHER``), as the 2019 seed project's ``her.yaml``.

A goal-conditioned driving policy rarely reaches its goal early in training, so the goal reward is sparse.
Hindsight relabelling turns any stretch of driving into a success: "had the goal been where the car
actually got to, this trajectory reached it". After every rollout, for each environment column of the
rollout buffer:

1. **Choose goal steps.** ``num_virtual_goals`` (K) time steps ``j`` are drawn, with replacement, with
   probability ``softmax(beta * t)`` where ``t = 0 .. 1`` is the step's position in the rollout (later steps
   are favoured: their segments are longer). The *segment* of ``j`` runs from the start of ``j``'s episode
   (the rollout's first step if the episode began in an earlier rollout) to ``j``, so it never crosses an
   episode start. Segments shorter than ``min_segment_len`` steps, or whose mean speed is below
   ``min_mean_speed`` m/s (a car standing still "reaches" where it stands), are discarded, so a rollout
   yields at most ``K * n_envs`` segments.
2. **Relabel.** The segment is copied as an extra column. The goal part of every observation
   (``obs[goal_key]``, the goal's ``(x, y)`` in the ego frame divided by ``goal_scale``) is replaced by the
   position reached at ``j + 1`` (the pose after step ``j``), expressed in the ego frame of *that*
   observation (x forward, y left, rotation by the ego yaw, as the environment's ``world_to_ego``) and
   clipped to the goal space. Measurements that describe the route to the original goal say nothing
   about the new one: the entries ``route_indices`` of ``obs[command_key]`` (the route command one-hot, as
   the seed project zeroed, and here also the lateral offset and heading error to the route, the distance
   to its next junction, its target speed and its points ahead) are zeroed, and the goal distance
   (``goal_distance_index``, in units of ``goal_distance_scale`` m) becomes the length of the path the car
   drove from that observation to the new goal, the route distance's hindsight counterpart. With frame
   stacking (``frame_size`` entries per frame, the newest last) the same entries of every stacked frame are
   relabelled; a stacked frame from before the segment start gets the segment's first value, exact at an
   episode start (the env repeats the first frame there). Other keys (images, speed, ...) are unchanged.
3. **Rewards.** ``her_reward_goal`` (500) at ``j``, where the episode is treated as done (terminal, no
   bootstrap); ``min(speed / her_speed_scale, 1)`` at the other steps, the speed being the ego speed after
   the step. The seed project's ``speed / 25`` took the speed in km/h: ``her_speed_scale`` is in m/s, and
   its default ``25 / 3.6`` (6.94 m/s) is the seed's reward.
   The rollout's own samples keep the env's reward.
4. **Values and advantages.** Values are recomputed for the relabelled observations with the current
   (pre-update) policy, and GAE(``gamma``, ``gae_lambda``) advantages and returns are computed for the
   extra column, on the hindsight rewards times ``her_reward_scale`` (see *Scales*).
5. **PPO update.** The extra samples join the PPO batch (they are shuffled into the minibatches with the
   original ``n_steps * n_envs`` samples). With ``importance_weighting="ratio"`` (default) they keep the
   *behaviour* log-probabilities ``log pi(a | s, g)`` of the original goal, so PPO's ratio
   ``pi_theta(a | s, g') / pi_old(a | s, g)`` is the (per-step) importance weight of the relabelled sample
   and its clipping bounds it.

   ``importance_weighting="per_decision"`` follows Hindsight Policy Gradients (Rauber et al., ICLR 2019):
   the taken actions are re-scored under the relabelled goal with the behaviour (pre-update) policy,
   ``rho_k = pi_old(a_k | s_k, g') / pi_old(a_k | s_k, g)``, and the advantage at segment step ``tau`` is
   multiplied by the per-decision product ``w_tau = prod_{k <= tau} rho_k`` (the actions up to ``tau``
   decide which states and rewards follow). As in HPG's *weighted* per-decision estimator, ``w_tau`` is
   self-normalised across the rollout's segments at each ``tau`` (divided by its mean over the segments
   that reach ``tau``) to keep the variance of long products in check. Those samples then carry
   ``pi_old(a | s, g')`` as their old log-probabilities, so PPO's ratio starts at 1 and clips the update
   around the relabelled behaviour policy, while ``w_tau`` does the off-goal correction. Value targets of
   relabelled samples are not importance-corrected in either mode.

**Scales.** The relabelled and the rollout's samples share one value network, one loss, one gradient-norm
clip (``max_grad_norm``) and SB3's per-minibatch advantage normalisation, so their scales must be kept
apart:

* ``her_reward_scale`` (default 0.002) multiplies the hindsight rewards before values, returns and
  advantages are computed: the goal's 500 counts as 1 and a step's speed reward as at most 0.002, so the
  relabelled value targets lie within the range of the env's returns. Unscaled (1.0), returns of up to 500
  gave a value loss in the thousands whose gradient (norm 100-800 against the policy loss's 0.2-1) set the
  clip factor of every step: the actor's share of the clipped gradient shrank 100-1000 times, below Adam's
  epsilon, and the policy hardly moved; the value network also learnt the relabelled scale on the env's
  observations.
* ``normalize_groups`` (default on) normalises the rollout's advantages and the relabelled advantages
  separately, each to zero mean and unit standard deviation over its group, before the minibatches mix
  them. Otherwise the relabelled advantages (tens to hundreds unscaled) set each minibatch's mean and
  standard deviation, and the rollout's advantages (the env's reward, the task) normalised to a near
  constant: the policy learnt from the relabelled samples alone.
* ``her_weight`` (default 0.5): with ``normalize_groups``, the relabelled advantages are also multiplied by
  ``her_weight * n_rollout / n_relabelled``, so all relabelled samples together weigh ``her_weight`` times
  the rollout's samples in the policy loss, whatever the segments' lengths (segments of up to ``n_steps``
  steps, K per env, give 2 to 4 times as many relabelled as real samples). The hindsight reward favours
  speed alone (no collision, lane or off-road terms): at full weight it pushed the policy faster than the
  env's target speed and into collisions.

Interface with the environment (a gymnasium env with ``spaces.Dict`` observations, ``MultiInputPolicy``):

* ``info["ego_pose"] = np.array([x, y, yaw])`` (map frame, metres and radians) and ``info["speed"]`` (m/s)
  in every step's info: the pose and speed *after* the step, i.e. at the next observation.
* The pose of an episode's first observation comes from ``info["ego_pose"]`` of the reset info, which SB3's
  VecEnvs expose as ``reset_infos`` (read from the innermost VecEnv, since VecEnv wrappers keep their own,
  empty, copy). When a reset info has no pose, the pose after the episode's first step is used instead,
  an approximation off by one step of driving.
* Observation normalisation (e.g. ``VecNormalize``) must leave ``goal_key`` and ``command_key`` raw.
* ``route_indices``, ``goal_distance_index``, ``goal_distance_scale`` and ``frame_size`` describe the env's
  measurement vector; for the carla-rl env ``carla_rl_agents.models`` reads them off its
  ``carla_rl_env.observations.measurements.MeasurementLayout``, so this module holds no copy of that layout.
"""

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from carla_rl_common.geometry import world_to_ego

SelfOnPolicyHER = TypeVar("SelfOnPolicyHER", bound="OnPolicyHER")
ImportanceWeighting = Literal["ratio", "per_decision"]


def goal_step_probabilities(n_steps: int, beta: float) -> np.ndarray:
    """``softmax(beta * t)`` over the rollout's steps, ``t`` from 0 (first step) to 1 (last step)."""
    logits = beta * np.linspace(0.0, 1.0, n_steps)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def sample_goal_steps(n_steps: int, num: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """``num`` goal steps of one rollout column, drawn with replacement from :func:`goal_step_probabilities`."""
    return rng.choice(n_steps, size=num, p=goal_step_probabilities(n_steps, beta))


def episode_segment_starts(episode_starts: np.ndarray) -> np.ndarray:
    """For each step of one rollout column, the step its episode started at (0 if before the rollout)."""
    steps = np.arange(len(episode_starts))
    return np.maximum.accumulate(np.where(episode_starts > 0, steps, 0))


def terminal_gae(rewards: np.ndarray, values: np.ndarray, gamma: float, gae_lambda: float) -> np.ndarray:
    """GAE advantages of a segment that ends in a terminal state (no bootstrap after the last step)."""
    advantages = np.zeros(len(rewards), dtype=np.float32)
    last = 0.0
    for t in reversed(range(len(rewards))):
        next_value = values[t + 1] if t + 1 < len(rewards) else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        last = delta + gamma * gae_lambda * last
        advantages[t] = last
    return advantages


def normalized(advantages: np.ndarray) -> np.ndarray:
    """``advantages`` shifted and scaled to zero mean and unit standard deviation (as SB3 does per minibatch)."""
    return ((advantages - advantages.mean()) / (advantages.std() + 1e-8)).astype(advantages.dtype)


def per_decision_weights(log_ratios: list[np.ndarray]) -> list[np.ndarray]:
    """Weighted per-decision importance weights (HPG): ``prod_{k<=tau} rho_k``, normalised per ``tau``.

    :param log_ratios: per segment, ``log rho_k`` for each of its steps.
    :return: per segment, the weight of each step; at each ``tau`` they average 1 over the segments.
    """
    cumulative = np.full((len(log_ratios), max(len(r) for r in log_ratios)), np.nan)
    for i, ratios in enumerate(log_ratios):
        cumulative[i, : len(ratios)] = np.cumsum(ratios)
    peak = np.nanmax(cumulative, axis=0)
    log_mean = peak + np.log(np.nanmean(np.exp(cumulative - peak), axis=0))
    weights = np.exp(cumulative - log_mean)
    return [weights[i, : len(ratios)] for i, ratios in enumerate(log_ratios)]


@dataclass(frozen=True)
class EgoTrace:
    """Ego pose and speed of one rollout, from the step infos. Arrays are (n_steps, n_envs, ...)."""

    obs_poses: np.ndarray  #: (x, y, yaw) at each observation of the rollout buffer
    next_poses: np.ndarray  #: (x, y, yaw) after each step (the pose "reached at t + 1")
    speeds: np.ndarray  #: speed (m/s) after each step


@dataclass(frozen=True)
class HindsightSegment:
    """Steps ``start .. goal_step`` (inclusive) of environment column ``env``, relabelled to ``goal_step``."""

    env: int
    start: int
    goal_step: int

    def __len__(self) -> int:
        return self.goal_step - self.start + 1


def _reset_poses(venv: VecEnv) -> np.ndarray:
    """Ego pose of each env's current episode start, from the innermost VecEnv's reset infos (NaN if none)."""
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return np.array([info.get("ego_pose", np.full(3, np.nan)) for info in venv.reset_infos], dtype=np.float64)


class EgoTraceRecorder(VecEnvWrapper):
    """Pass-through wrapper, one per rollout, that records the ego pose and speed of each step's infos.

    :param venv: the training VecEnv
    :param first_obs_pose: pose at the rollout's first observation, NaN where unknown
    """

    def __init__(self, venv: VecEnv, first_obs_pose: np.ndarray):
        super().__init__(venv)
        self.obs_poses: list[np.ndarray] = [first_obs_pose]
        self.next_poses: list[np.ndarray] = []
        self.speeds: list[np.ndarray] = []

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        next_pose = np.array([info["ego_pose"] for info in infos], dtype=np.float64)
        self.next_poses.append(next_pose)
        self.speeds.append(np.array([info["speed"] for info in infos], dtype=np.float64))
        self.obs_poses.append(np.where(dones[:, None], _reset_poses(self.venv), next_pose))
        return obs, rewards, dones, infos

    def trace(self) -> EgoTrace:
        """The recorded rollout; unknown episode-start poses become the pose after the episode's first step."""
        next_poses = np.array(self.next_poses)
        obs_poses = np.array(self.obs_poses[: len(next_poses)])
        return EgoTrace(np.where(np.isnan(obs_poses), next_poses, obs_poses), next_poses, np.array(self.speeds))


class HindsightDictRolloutBuffer(DictRolloutBuffer):
    """``DictRolloutBuffer`` that also serves the hindsight samples added after the rollout.

    The rollout's ``n_steps * n_envs`` samples come first (flattened env by env, as SB3 does), then the
    hindsight samples, segment after segment, in the order of ``hindsight_segments``.
    """

    hindsight_segments: list[HindsightSegment]

    def reset(self) -> None:
        super().reset()
        self.hindsight_segments = []
        self._hindsight: dict[str, Any] | None = None

    def add_hindsight(
        self,
        segments: list[HindsightSegment],
        observations: dict[str, np.ndarray],
        actions: np.ndarray,
        values: np.ndarray,
        log_probs: np.ndarray,
        advantages: np.ndarray,
        returns: np.ndarray,
    ) -> None:
        """Append flat hindsight samples (one row per step of ``segments``) to the batch."""
        self.hindsight_segments = segments
        self._hindsight = dict(
            observations=observations,
            actions=actions.reshape(len(actions), self.action_dim),
            values=values.reshape(-1, 1),
            log_probs=log_probs.reshape(-1, 1),
            advantages=advantages.reshape(-1, 1),
            returns=returns.reshape(-1, 1),
        )

    def get(  # type: ignore[override]
        self, batch_size: int | None = None
    ) -> Generator[DictRolloutBufferSamples, None, None]:
        """Shuffled minibatches over the rollout and hindsight samples (all of them if ``batch_size`` is None)."""
        assert self.full, ""
        if not self.generator_ready:
            for key, obs in self.observations.items():
                self.observations[key] = self.swap_and_flatten(obs)
            for name in ("actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            if self._hindsight is not None:
                for key, obs in self._hindsight["observations"].items():
                    flat = self.observations[key]
                    self.observations[key] = np.concatenate([flat, obs.astype(flat.dtype)])
                for name in ("actions", "values", "log_probs", "advantages", "returns"):
                    extra = self._hindsight[name].astype(self.__dict__[name].dtype)
                    self.__dict__[name] = np.concatenate([self.__dict__[name], extra])
            self.generator_ready = True

        n_samples = len(self.values)
        indices = np.random.permutation(n_samples)
        batch_size = batch_size or n_samples
        for start in range(0, n_samples, batch_size):
            yield self._get_samples(indices[start : start + batch_size])


class OnPolicyHER(PPO):
    """PPO with on-policy hindsight relabelling of goal-conditioned rollouts (see the module docstring).

    PPO parameters are as in :class:`stable_baselines3.PPO` (the rollout buffer is fixed to
    :class:`HindsightDictRolloutBuffer`); the hindsight ones:

    :param num_virtual_goals: goal steps sampled per environment column and rollout (K)
    :param beta: inverse temperature of the goal-step softmax over the normalised step time
    :param her_reward_goal: reward at the relabelled goal step
    :param her_speed_scale: reward ``min(speed / her_speed_scale, 1)`` at the other steps
    :param her_reward_scale: factor from the hindsight rewards to the units of the relabelled columns' values,
        returns and advantages (0.002: the goal's 500 counts as 1)
    :param normalize_groups: normalise the rollout's and the relabelled samples' advantages separately (zero
        mean, unit standard deviation over each group) before they share the PPO minibatches
    :param her_weight: with ``normalize_groups``, the relabelled advantages are also multiplied by
        ``her_weight * n_rollout / n_relabelled``: together the relabelled samples weigh ``her_weight`` times
        the rollout's samples in the policy loss, however many they are (None: each sample weighs the same)
    :param min_segment_len: discard segments with fewer steps
    :param min_mean_speed: discard segments with a lower mean speed (m/s)
    :param goal_key: observation key of the goal, ``(x, y)`` in the ego frame divided by ``goal_scale``
    :param goal_scale: metres per unit of the stored goal
    :param command_key: observation key of the measurement vector that holds the route command
    :param route_indices: entries of one frame of ``obs[command_key]`` that describe the route to the goal,
        zeroed in relabelled observations (None: none)
    :param goal_distance_index: entry of one frame of ``obs[command_key]`` that holds the distance to the goal,
        relabelled to the driven path length (None: none)
    :param goal_distance_scale: metres per unit of that entry
    :param frame_size: entries per stacked frame of ``obs[command_key]`` (None: the whole vector, one frame)
    :param importance_weighting: ``"ratio"`` (PPO's ratio against the behaviour log-probs) or
        ``"per_decision"`` (HPG's weighted per-decision weights on the advantages)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MultiInputPolicy": MultiInputActorCriticPolicy}
    rollout_buffer: HindsightDictRolloutBuffer

    def __init__(
        self,
        policy: str | type[MultiInputActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        num_virtual_goals: int = 5,
        beta: float = 1.0,
        her_reward_goal: float = 500.0,
        her_speed_scale: float = 25.0 / 3.6,
        her_reward_scale: float = 0.002,
        normalize_groups: bool = True,
        her_weight: float | None = 0.5,
        min_segment_len: int = 10,
        min_mean_speed: float = 0.1,
        goal_key: str = "goal",
        goal_scale: float = 1.0,
        command_key: str = "measurements",
        route_indices: list[int] | tuple[int, ...] | None = None,
        goal_distance_index: int | None = None,
        goal_distance_scale: float = 1.0,
        frame_size: int | None = None,
        importance_weighting: ImportanceWeighting = "ratio",
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=HindsightDictRolloutBuffer,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        if importance_weighting not in ("ratio", "per_decision"):
            raise ValueError(f"importance_weighting must be 'ratio' or 'per_decision', got {importance_weighting!r}")
        self.num_virtual_goals = num_virtual_goals
        self.beta = beta
        self.her_reward_goal = her_reward_goal
        self.her_speed_scale = her_speed_scale
        self.her_reward_scale = her_reward_scale
        self.normalize_groups = normalize_groups
        self.her_weight = her_weight
        self.min_segment_len = min_segment_len
        self.min_mean_speed = min_mean_speed
        self.goal_key = goal_key
        self.goal_scale = goal_scale
        self.command_key = command_key
        self.route_indices = None if route_indices is None else [int(i) for i in route_indices]
        self.goal_distance_index = goal_distance_index
        self.goal_distance_scale = goal_distance_scale
        self.frame_size = frame_size
        self.importance_weighting = importance_weighting
        #: Ego pose at ``self._last_obs`` (NaN where unknown), carried from one rollout to the next.
        self._last_obs_pose: np.ndarray | None = None
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if not isinstance(self.observation_space, spaces.Dict) or self.goal_key not in self.observation_space.spaces:
            raise ValueError(f"OnPolicyHER needs a Dict observation space with a {self.goal_key!r} key")
        if self.route_indices is not None or self.goal_distance_index is not None:
            if self.command_key not in self.observation_space.spaces:
                raise ValueError(
                    f"route_indices or goal_distance_index is set but the observations have no {self.command_key!r} key"
                )
            size = int(np.prod(self.observation_space[self.command_key].shape))
            frame = self.frame_size or size
            if size % frame:
                raise ValueError(f"frame_size {frame} does not divide the {size} entries of {self.command_key!r}")
            bad = [
                i
                for i in [*(self.route_indices or []), self.goal_distance_index]
                if i is not None and not 0 <= i < frame
            ]
            if bad:
                raise ValueError(f"route_indices/goal_distance_index {bad} lie outside a frame of {frame} entries")
        super()._setup_model()
        self._her_rng = np.random.default_rng(self.seed)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        env_reset = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if env_reset or self._last_obs_pose is None:
            assert self.env is not None
            self._last_obs_pose = _reset_poses(self.env)
        return result

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: HindsightDictRolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """PPO's rollout, recording ego poses and speeds, then the hindsight segments added to the buffer."""
        assert self._last_obs_pose is not None
        recorder = EgoTraceRecorder(env, self._last_obs_pose)
        complete = super().collect_rollouts(recorder, callback, rollout_buffer, n_rollout_steps)
        self._last_obs_pose = recorder.obs_poses[rollout_buffer.pos]  # the pose at self._last_obs
        if complete:
            self.add_hindsight(rollout_buffer, recorder.trace())
        return complete

    def hindsight_segments(self, episode_starts: np.ndarray, speeds: np.ndarray) -> list[HindsightSegment]:
        """Sample the goal steps of each column and keep the segments long and fast enough.

        :param episode_starts: (n_steps, n_envs) episode-start flags of the rollout buffer
        :param speeds: (n_steps, n_envs) ego speed after each step
        """
        n_steps, n_envs = episode_starts.shape
        segments = []
        for env in range(n_envs):
            starts = episode_segment_starts(episode_starts[:, env])
            for goal_step in sample_goal_steps(n_steps, self.num_virtual_goals, self.beta, self._her_rng):
                segment = HindsightSegment(env, int(starts[goal_step]), int(goal_step))
                mean_speed = speeds[segment.start : segment.goal_step + 1, env].mean()
                if len(segment) >= self.min_segment_len and mean_speed >= self.min_mean_speed:
                    segments.append(segment)
        return segments

    def relabel(
        self, observations: dict[str, np.ndarray], obs_poses: np.ndarray, goal_position: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Copies of a segment's observations with the goal moved to ``goal_position``, the route entries
        zeroed and the goal distance set to the driven path length (see the module docstring).

        :param observations: the segment's observations, each (L, ...)
        :param obs_poses: (L, 3) ego pose at each observation
        :param goal_position: (2,) map-frame position reached at the goal step + 1
        """
        relabelled = {key: np.array(obs, copy=True) for key, obs in observations.items()}
        goal_space = self.observation_space[self.goal_key]
        goal = world_to_ego(goal_position, obs_poses[..., 0], obs_poses[..., 1], obs_poses[..., 2]) / self.goal_scale
        relabelled[self.goal_key] = np.clip(goal, goal_space.low, goal_space.high).astype(goal_space.dtype)
        if self.route_indices is None and self.goal_distance_index is None:
            return relabelled
        vector = relabelled[self.command_key]
        length = len(vector)
        frames = vector.reshape(length, -1, self.frame_size or vector.shape[-1])  # (L, stack, frame), oldest first
        if self.route_indices:
            frames[:, :, self.route_indices] = 0
        if self.goal_distance_index is not None:
            # path length from each observation's pose to the goal: the driven steps after it, then the last one
            points = np.concatenate([obs_poses[:, :2], goal_position[None, :2]])
            to_goal = np.cumsum(np.hypot(*np.diff(points, axis=0).T)[::-1])[::-1]
            stack = frames.shape[1]
            for k in range(stack):  # frame k of the stack is (stack - 1 - k) steps old
                source = np.maximum(np.arange(length) - (stack - 1 - k), 0)
                frames[:, k, self.goal_distance_index] = to_goal[source] / self.goal_distance_scale
        relabelled[self.command_key] = frames.reshape(vector.shape)
        return relabelled

    def hindsight_rewards(self, speeds: np.ndarray) -> np.ndarray:
        """Rewards of a relabelled segment: ``min(speed / her_speed_scale, 1)``, ``her_reward_goal`` at the end."""
        rewards = np.minimum(speeds / self.her_speed_scale, 1.0).astype(np.float32)
        rewards[-1] = self.her_reward_goal
        return rewards

    def add_hindsight(self, rollout_buffer: HindsightDictRolloutBuffer, trace: EgoTrace) -> None:
        """Relabel sampled segments of the (complete, not yet flattened) rollout and add them to the buffer."""
        segments = self.hindsight_segments(rollout_buffer.episode_starts, trace.speeds)
        self.logger.record("her/segments", len(segments))
        self.logger.record("her/samples", sum(len(s) for s in segments))
        if not segments:
            return
        observations: dict[str, list[np.ndarray]] = {key: [] for key in rollout_buffer.observations}
        columns: dict[str, list[np.ndarray]] = {
            name: [] for name in ("actions", "values", "behaviour_log_probs", "log_probs", "advantages", "returns")
        }
        for segment in segments:
            steps, env = slice(segment.start, segment.goal_step + 1), segment.env
            obs = self.relabel(
                {key: value[steps, env] for key, value in rollout_buffer.observations.items()},
                trace.obs_poses[steps, env],
                trace.next_poses[segment.goal_step, env, :2],
            )
            actions = rollout_buffer.actions[steps, env]
            values, relabelled_log_probs = self._evaluate(obs, actions)
            rewards = self.her_reward_scale * self.hindsight_rewards(trace.speeds[steps, env])
            advantages = terminal_gae(rewards, values, self.gamma, self.gae_lambda)
            for key, value in obs.items():
                observations[key].append(value)
            columns["actions"].append(actions)
            columns["values"].append(values)
            columns["behaviour_log_probs"].append(rollout_buffer.log_probs[steps, env])
            columns["log_probs"].append(relabelled_log_probs)
            columns["advantages"].append(advantages)
            columns["returns"].append(advantages + values)

        if self.normalize_groups:
            rollout_buffer.advantages[:] = normalized(rollout_buffer.advantages)
            sizes = np.cumsum([len(a) for a in columns["advantages"]])[:-1]
            relabelled = normalized(np.concatenate(columns["advantages"]))
            if self.her_weight is not None:
                relabelled *= self.her_weight * rollout_buffer.advantages.size / len(relabelled)
            columns["advantages"] = np.split(relabelled, sizes)
        if self.importance_weighting == "per_decision":
            pairs = zip(columns["log_probs"], columns["behaviour_log_probs"], strict=True)
            weights = per_decision_weights([relabelled - behaviour for relabelled, behaviour in pairs])
            columns["advantages"] = [a * w for a, w in zip(columns["advantages"], weights, strict=True)]
            old_log_probs = columns["log_probs"]
        else:
            old_log_probs = columns["behaviour_log_probs"]
        rollout_buffer.add_hindsight(
            segments,
            {key: np.concatenate(value) for key, value in observations.items()},
            np.concatenate(columns["actions"]),
            np.concatenate(columns["values"]),
            np.concatenate(old_log_probs),
            np.concatenate(columns["advantages"]),
            np.concatenate(columns["returns"]),
        )

    def _evaluate(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values of the observations and log-probs of the actions under the current (pre-update) policy."""
        action_tensor = th.as_tensor(actions, device=self.device)
        if isinstance(self.action_space, spaces.Discrete):
            action_tensor = action_tensor.long().flatten()
        with th.no_grad():
            values, log_probs, _ = self.policy.evaluate_actions(obs_as_tensor(observations, self.device), action_tensor)
        return values.flatten().cpu().numpy(), log_probs.flatten().cpu().numpy()

    def learn(
        self: SelfOnPolicyHER,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "OnPolicyHER",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOnPolicyHER:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
