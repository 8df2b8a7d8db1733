"""The env side of exact resume: each env's episode in progress, saved as what reproduces it.

A simulator cannot be put into a checkpoint, but an episode can be replayed: :class:`ResumableEnv` wraps a
gymnasium env and records, for the episode in progress, the env's random sources just before its reset
(gymnasium's ``np_random``, the scenario source's generator and position, the simulator's generator), the
reset's seed and options (the scenario a ``ShmVecEnv`` worker drew ahead) and every action since. Resuming
restores those sources, resets with the same arguments and steps the same actions: an env whose episode is
a function of its reset arguments, sources and actions then stands exactly where it stood, and the sources
are put where they were at the checkpoint. The in-process env is such a function except for the simulator's
own traffic (``sim.traffic`` > 0), which a fresh simulator starts from its first places: a replayed episode
is still the same while no vehicle comes near the ego. A replay that arrives elsewhere (the observation's
SHA-256 differs from the saved one) or whose episode ends early is warned of once; training goes on from
there, not exactly.

:func:`vec_env_state` collects this from every env of a VecEnv (``None`` unless all of them are wrapped)
together with the episode statistics in progress of VecMonitor and VecNormalize; :func:`restore_vec_env`
puts it back and returns the observation to continue from. Everything is plain containers and tensors
(``torch.load(weights_only=True)`` reads it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize

from carla_rl_env.scenarios import Scenario


def _generator_state(generator: np.random.Generator) -> dict[str, Any]:
    return generator.bit_generator.state


def random_sources(env: gym.Env) -> dict[str, Any]:
    """The random state of ``env`` that decides its next episodes: gymnasium's ``np_random`` (once made),
    the scenario source (``scenarios``: generator and position) and the simulator's generator (``sim.rng``),
    where the env has them, and its episode counter."""
    inner = env.unwrapped
    sources: dict[str, Any] = {}
    if getattr(inner, "_np_random", None) is not None:
        sources["np_random"] = _generator_state(inner._np_random)
    scenarios = getattr(inner, "scenarios", None)
    if isinstance(getattr(scenarios, "rng", None), np.random.Generator):
        sources["scenarios"] = {"rng": _generator_state(scenarios.rng), "index": int(scenarios.index)}
    sim = getattr(inner, "sim", None)
    if isinstance(getattr(sim, "rng", None), np.random.Generator):
        sources["sim"] = _generator_state(sim.rng)
    if isinstance(getattr(inner, "episode", None), int):
        sources["episode"] = inner.episode
    return sources


def set_random_sources(env: gym.Env, sources: dict[str, Any]) -> None:
    """Put ``env``'s random sources where :func:`random_sources` found them (generators are set in place:
    the simulator's traffic shares its generator)."""
    inner = env.unwrapped
    if "np_random" in sources:
        inner.np_random.bit_generator.state = sources["np_random"]
    if "scenarios" in sources:
        inner.scenarios.rng.bit_generator.state = sources["scenarios"]["rng"]
        inner.scenarios.index = int(sources["scenarios"]["index"])
    if "sim" in sources:
        inner.sim.rng.bit_generator.state = sources["sim"]
    if "episode" in sources:
        inner.episode = int(sources["episode"])


def _plain_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """Reset options as plain values: a ``Scenario`` becomes its fields."""
    if options is None:
        return None
    plain: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Scenario):
            plain[key] = {"scenario": dataclasses.asdict(value)}
        elif value is None or isinstance(value, (bool, int, float, str)):
            plain[key] = value
        else:
            raise TypeError(f"cannot checkpoint the reset option {key!r} ({type(value).__name__})")
    return plain


def _options(plain: dict[str, Any] | None) -> dict[str, Any] | None:
    if plain is None:
        return None
    options = {}
    for key, value in plain.items():
        if isinstance(value, dict) and "scenario" in value:
            fields = value["scenario"]
            value = Scenario(**{**fields, "start": tuple(fields["start"]), "goal": tuple(fields["goal"])})
        options[key] = value
    return options


class ResumableEnv(gym.Wrapper):
    """Records what replays the episode in progress (see the module docstring); ``resume_state()`` returns it
    and ``resume_from(state)`` makes the next reset replay it instead of starting an episode."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._episode: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None
        self._obs: Any = None  # the latest observation, whose digest a checkpoint saves
        self._warned = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self._pending is not None:
            state, self._pending = self._pending, None
            return self._replay(state)
        self._episode = {
            "seed": seed,
            "options": _plain_options(options),
            "sources": random_sources(self.env),
            "actions": [],
        }
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        return obs, info

    def step(self, action):
        if self._episode is not None:
            self._episode["actions"].append(np.array(action, copy=True))
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def resume_state(self) -> dict[str, Any] | None:
        """The episode in progress: reset arguments, the sources before the reset and now, the actions."""
        if self._episode is None:
            return None
        space = self.env.action_space
        recorded = self._episode["actions"]
        actions = np.stack(recorded) if recorded else np.zeros((0, *space.shape), space.dtype)
        return {
            "seed": self._episode["seed"],
            "options": self._episode["options"],
            "sources": self._episode["sources"],
            "actions": th.from_numpy(np.ascontiguousarray(actions)),
            "now": random_sources(self.env),
            "digest": _digest(self._obs),
        }

    def resume_from(self, state: dict[str, Any] | None) -> None:
        """Replay ``state`` (a ``resume_state()``) at the next reset, whatever its seed and options."""
        self._pending = state

    def _replay(self, state: dict[str, Any]):
        set_random_sources(self.env, state["sources"])
        obs, info = self.reset(seed=state["seed"], options=_options(state["options"]))
        for action in state["actions"].numpy():
            obs, _, terminated, truncated, _ = self.step(action)
            if terminated or truncated:
                self._not_exact("replaying the episode in progress ended it early; a new one starts")
                return self.reset()
        set_random_sources(self.env, state["now"])
        if _digest(obs) != state["digest"]:
            self._not_exact("the replayed episode in progress arrived at another observation than the saved one")
        return obs, info

    def _not_exact(self, what: str) -> None:
        if not self._warned:
            warnings.warn(
                f"resume is not exact: {what} (the env's episode is not a function of its seeds and actions, "
                "e.g. the simulator's own traffic near the ego)",
                stacklevel=3,
            )
            self._warned = True


def _digest(obs: Any) -> str:
    """SHA-256 of an observation (a dict of arrays, or an array): what a replay must arrive at."""
    digest = hashlib.sha256()
    for key in sorted(obs) if isinstance(obs, dict) else [None]:
        value = np.ascontiguousarray(obs if key is None else obs[key])
        digest.update(f"{key}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _base(venv: VecEnv) -> VecEnv:
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return venv


def _wrapper(venv: VecEnv, kind: type) -> Any:
    while isinstance(venv, VecEnvWrapper):
        if isinstance(venv, kind):
            return venv
        venv = venv.venv
    return None


def vec_env_state(venv: VecEnv) -> dict[str, Any] | None:
    """What :func:`restore_vec_env` needs to continue ``venv`` where it stands, or None unless every env is a
    :class:`ResumableEnv`: each env's episode in progress (a ``ShmVecEnv`` adds the scenarios it drew ahead,
    through its own ``resume_states``), and VecMonitor's and VecNormalize's statistics of those episodes."""
    base = _base(venv)
    if not all(base.env_is_wrapped(ResumableEnv)):
        return None
    states = getattr(base, "resume_states", None)
    envs = states() if callable(states) else base.env_method("resume_state")
    state: dict[str, Any] = {"envs": envs}
    monitor = _wrapper(venv, VecMonitor)
    if monitor is not None:
        state["monitor"] = {
            "returns": th.from_numpy(np.array(monitor.episode_returns, np.float64)),
            "lengths": th.from_numpy(np.array(monitor.episode_lengths, np.int64)),
            "count": int(monitor.episode_count),
        }
    normalize = _wrapper(venv, VecNormalize)
    if normalize is not None:
        state["normalize_returns"] = th.from_numpy(np.array(normalize.returns, np.float64))
    return state


def restore_vec_env(venv: VecEnv, state: dict[str, Any]) -> Any:
    """Replay every env's episode in progress through ``venv.reset()`` (so each VecEnv keeps its own
    bookkeeping), then put the statistics back; returns the observation to continue from."""
    base = _base(venv)
    for index, env_state in enumerate(state["envs"]):
        base.env_method("resume_from", env_state, indices=[index])
    obs = venv.reset()
    monitor = _wrapper(venv, VecMonitor)
    if monitor is not None and "monitor" in state:
        monitor.episode_returns = state["monitor"]["returns"].numpy().astype(monitor.episode_returns.dtype)
        monitor.episode_lengths = state["monitor"]["lengths"].numpy().astype(monitor.episode_lengths.dtype)
        monitor.episode_count = state["monitor"]["count"]
    normalize = _wrapper(venv, VecNormalize)
    if normalize is not None and "normalize_returns" in state:
        normalize.returns = state["normalize_returns"].numpy().copy()
    return obs
