"""A Stable-Baselines3 ``VecEnv`` over worker processes that each step several envs, with the batch in shared memory.

``SubprocVecEnv`` runs one env per process and, every step, pickles each env's action, observation, reward and
done through its own pipe: with 16 envs the main process does 32 pipe transfers and 16 unpickles of
observation dicts a step, serially, while the workers wait. :class:`ShmVecEnv` instead

- runs ``envs_per_worker`` envs in each of ``num_envs / envs_per_worker`` workers, the first of them this
  process (it steps its envs while the worker processes step theirs, rather than sleeping until they reply);
- keeps actions, observations, rewards and dones in one shared-memory block (numpy views on both sides), so a
  step is one short command and one reply per *worker*; the reply carries only the info dicts (small; SB3's
  callbacks read them) and, for an env that finished, its terminal observation and reset info;
- resets a finished env inside its worker at once (SB3's semantics: ``terminal_observation`` and
  ``TimeLimit.truncated`` in the info, the new episode's first observation in the batch), and draws the
  scenario of that env's next episode while the worker waits for the next actions (for envs whose reset takes
  ``options={"scenario": ...}`` from a ``scenarios.next()`` source, as ``InProcessEnv``'s does): route
  sampling, two thirds of a reset, then leaves the lockstep batch. The scenario sequence stays the one a
  ``DummyVecEnv`` draws, and a seeded reset discards the drawn scenario first;
- polls for the next message for a moment before blocking, where each worker has a core of its own (waking
  a blocked process costs about as much as an env step in a VM).

A worker whose env raises reports the error (the exception's text, the env's index) and exits; a worker that
dies is reported as such when its reply is awaited: neither leaves the caller waiting.

:func:`make_vec_env` picks the VecEnv of a run config: ``train.num_workers`` 0 keeps what training used before
(a ``DummyVecEnv`` for one env, a ``SubprocVecEnv`` for more); it wraps every env in ``ResumableEnv``, so that a
checkpoint can replay the episodes in progress (``carla_rl_agents.resume``).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnv, VecEnvIndices
from stable_baselines3.common.vec_env.util import dict_to_obs, obs_space_info

from carla_rl_agents.models import RUN_CONFIG_SOURCE
from carla_rl_agents.resume import ResumableEnv, random_sources
from carla_rl_common.config import ConfigError


class _Buffers:
    """Numpy views of one shared-memory block: actions, observations (one array per key), rewards, dones.

    Every array has the env index as first axis; each process maps the block by name and builds the same views.
    """

    def __init__(self, shm: SharedMemory, num_envs: int, observation_space: spaces.Space, action_space: spaces.Space):
        self.keys, shapes, dtypes = obs_space_info(observation_space)
        fields: list[tuple[Any, tuple[int, ...], np.dtype]] = [
            ("actions", (num_envs, *action_space.shape), np.dtype(action_space.dtype)),
            ("rewards", (num_envs,), np.dtype(np.float32)),
            ("dones", (num_envs,), np.dtype(np.bool_)),
        ]
        fields += [(("obs", key), (num_envs, *shapes[key]), np.dtype(dtypes[key])) for key in self.keys]
        self.arrays: dict[Any, np.ndarray] = {}
        offset = 0
        for name, shape, dtype in fields:
            offset = -(-offset // 64) * 64  # cache-line aligned, so workers do not share lines
            self.arrays[name] = np.ndarray(shape, dtype, buffer=shm.buf, offset=offset)
            offset += int(np.prod(shape)) * dtype.itemsize

    @staticmethod
    def nbytes(num_envs: int, observation_space: spaces.Space, action_space: spaces.Space) -> int:
        keys, shapes, dtypes = obs_space_info(observation_space)
        sizes = [int(np.prod(action_space.shape)) * np.dtype(action_space.dtype).itemsize, 4, 1]
        sizes += [int(np.prod(shapes[k])) * np.dtype(dtypes[k]).itemsize for k in keys]
        return sum(-(-num_envs * size // 64) * 64 + 64 for size in sizes)

    @property
    def actions(self) -> np.ndarray:
        return self.arrays["actions"]

    @property
    def rewards(self) -> np.ndarray:
        return self.arrays["rewards"]

    @property
    def dones(self) -> np.ndarray:
        return self.arrays["dones"]

    def write_obs(self, index: int, obs: Any) -> None:
        for key in self.keys:
            self.arrays[("obs", key)][index] = obs if key is None else obs[key]

    def read_obs(self, observation_space: spaces.Space) -> Any:
        """A copy of the batch of observations (SB3 keeps the last one while the next step overwrites these)."""
        return dict_to_obs(observation_space, {key: self.arrays[("obs", key)].copy() for key in self.keys})


def _scenario_source(env: gym.Env) -> Any:
    """The env's ``scenarios`` (a source with ``next()``) when its reset takes ``options={"scenario": ...}``."""
    source = getattr(env.unwrapped, "scenarios", None)
    return source if callable(getattr(source, "next", None)) else None


class _WorkerEnvs:
    """The envs of one worker (global indices ``first ...``) on the shared block, with pre-drawn scenarios.

    ``current`` is the index of the env being built, stepped or reset (for the error report).
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], first: int):
        self.first = self.current = first
        self.envs: list[gym.Env] = []
        for fn in env_fns:
            self.current = first + len(self.envs)
            self.envs.append(fn())
        self.sources = [_scenario_source(env) for env in self.envs]
        self.next_scenarios: list[Any] = [None] * len(self.envs)
        # each env's random sources before its drawn scenario: what a checkpoint saves as "now", so that a
        # resumed worker draws that scenario again
        self.before_draw: list[dict[str, Any] | None] = [None] * len(self.envs)
        self.buffers: _Buffers | None = None  # set once the block exists

    def reset_env(self, j: int, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset env ``j`` with its pre-drawn scenario, unless ``options`` name one (the drawn one then waits for
        the next reset) or a seed is given (it reseeds the source: the drawn scenario belongs to the old
        sequence and is dropped)."""
        self.current = self.first + j
        options = dict(options or {})
        if seed is not None:
            self.next_scenarios[j] = None
        elif "scenario" not in options and self.next_scenarios[j] is not None:
            options["scenario"], self.next_scenarios[j] = self.next_scenarios[j], None
        return self.envs[j].reset(seed=seed, options=options or None)

    def reset(self, seeds_options: Sequence[tuple[int | None, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
        """Reset every env (its seed and options), write the first observations; the reset infos by index."""
        reset_infos = {}
        for j, (seed, options) in enumerate(seeds_options):
            obs, reset_infos[self.first + j] = self.reset_env(j, seed, options)
            self.buffers.write_obs(self.first + j, obs)
        return reset_infos

    def step(self) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        """Step every env with its action from the block and write back observation, reward and done; a
        finished env is reset at once (SB3's semantics). The infos, and the reset infos of the envs reset."""
        buffers, infos, reset_infos = self.buffers, [], {}
        for j, env in enumerate(self.envs):
            index = self.current = self.first + j
            obs, reward, terminated, truncated, info = env.step(buffers.actions[index].copy())
            done = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if done:
                info["terminal_observation"] = obs
                obs, reset_infos[index] = self.reset_env(j)
            buffers.write_obs(index, obs)
            buffers.rewards[index] = reward
            buffers.dones[index] = done
            infos.append(info)
        return infos, reset_infos

    def draw_scenarios(self) -> None:
        """Draw the next episode's scenario of every env that has none (called while the worker is idle)."""
        for j, source in enumerate(self.sources):
            if source is not None and self.next_scenarios[j] is None:
                self.current = self.first + j
                self.before_draw[j] = random_sources(self.envs[j])
                self.next_scenarios[j] = source.next()

    def call(self, cmd: str, data: tuple) -> Any:
        """``get_attr``, ``set_attr``, ``env_method`` or ``is_wrapped`` on env ``data[0]`` (within the worker)."""
        j, *args = data
        self.current = self.first + j
        env = self.envs[j]
        if cmd == "get_attr":
            return env.get_wrapper_attr(args[0])
        if cmd == "set_attr":
            return setattr(env, args[0], args[1])
        if cmd == "env_method":
            return env.get_wrapper_attr(args[0])(*args[1], **args[2])
        if cmd == "is_wrapped":
            return is_wrapped(env, args[0])
        if cmd == "resume_state":
            return self.resume_state(j)
        raise ValueError(f"unknown command {cmd!r}")

    def resume_state(self, j: int) -> dict[str, Any] | None:
        """Env ``j``'s ``ResumableEnv.resume_state``, its sources as they were before the scenario drawn ahead
        (the resumed worker draws it again)."""
        state = self.envs[j].get_wrapper_attr("resume_state")()
        if state is not None and self.next_scenarios[j] is not None:
            state["now"] = self.before_draw[j]
        return state

    def close(self) -> None:
        for env in self.envs:
            env.close()


class _Waiter:
    """Waits for the next message on a connection: polled for up to ``spin`` seconds without sleeping, so a
    message that comes within it is taken without the wake-up of a blocked process (tenths of a millisecond
    in a VM, as long as a step of the env), then blocking. After a wait that the poll did not cover (the
    other side was slow, or descheduled on a machine busy with other work, where polling takes the core it
    needs) the next wait blocks at once; after a blocking wait that came within ``spin`` it polls again."""

    def __init__(self, conn: Connection, spin: float):
        self.conn, self.spin, self.polling = conn, spin, spin > 0

    def wait(self) -> None:
        start = time.perf_counter()
        if self.polling:
            while time.perf_counter() - start < self.spin:
                if self.conn.poll():
                    return
                os.sched_yield()
        self.conn.poll(None)
        self.polling = self.spin > 0 and time.perf_counter() - start < self.spin


def _worker(
    conn: Connection, env_fns: CloudpickleWrapper, first: int, shm_name: str, num_envs: int, spin: float
) -> None:
    """A worker process: builds its envs, maps the shared block, then serves commands until ``close``."""
    shm: SharedMemory | None = None
    workers: _WorkerEnvs | None = None
    try:
        workers = _WorkerEnvs(env_fns.var, first)
        space = workers.envs[0].observation_space, workers.envs[0].action_space
        conn.send(("spaces", space))
        if not conn.recv():  # the main process could not set up (another worker failed)
            return
        shm = SharedMemory(name=shm_name)
        workers.buffers = _Buffers(shm, num_envs, *space)
        waiter = _Waiter(conn, spin)
        while True:
            waiter.wait()
            cmd, data = conn.recv()
            if cmd == "step":
                conn.send(("ok", workers.step()))
                workers.draw_scenarios()  # while the main process runs the policy
            elif cmd == "reset":
                conn.send(("ok", workers.reset(data)))
                workers.draw_scenarios()
            elif cmd == "close":
                workers.close()
                conn.send(("ok", None))
                return
            else:
                conn.send(("ok", workers.call(cmd, data)))
    except (EOFError, KeyboardInterrupt):  # the main process went away, or ^C reached the process group
        pass
    except BaseException:
        try:
            conn.send(("error", (first if workers is None else workers.current, traceback.format_exc())))
        except (BrokenPipeError, EOFError):
            pass
    finally:
        if workers is not None:
            workers.buffers = None  # its views hold the block's memory: drop them before closing it
        if shm is not None:
            shm.close()
        conn.close()


class WorkerError(RuntimeError):
    """A worker of a :class:`ShmVecEnv` raised or died; the message names the env and the cause."""


class ShmVecEnv(VecEnv):
    """Envs stepped by ``len(env_fns) / envs_per_worker`` workers, the batch in shared memory.

    With ``main_worker`` (the default) the first worker is this process: it steps envs ``0 ..
    envs_per_worker - 1`` itself in ``step_wait``, while the worker processes step the others, instead of
    sleeping until their replies come (a process fewer, and on a machine with as many cores as workers no
    wake-up on the critical path: 2 envs on 2 cores went from 1.35x to 1.8x one env). Those envs do not pre-draw
    their scenarios (there is no idle time here to hide it in).

    :param env_fns: one function per env that builds it (in its worker; pickled with cloudpickle)
    :param envs_per_worker: envs each worker steps, one after another (``len(env_fns)`` must be a multiple)
    :param main_worker: step the first worker's envs in this process
    :param spin: seconds a waiting process polls for the next message before it blocks (see ``_Waiter``); 0
        where there are fewer cores than workers: a polling process takes the core another one needs
    :param start_method: multiprocessing start method (default: forkserver where available, else spawn, as
        ``SubprocVecEnv``)
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        envs_per_worker: int = 1,
        main_worker: bool = True,
        spin: float = 0.002,
        start_method: str | None = None,
    ):
        num_envs = len(env_fns)
        if envs_per_worker < 1 or num_envs % envs_per_worker:
            raise ValueError(f"{num_envs} envs do not split into workers of {envs_per_worker} envs")
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        self.envs_per_worker, self.spin = envs_per_worker, spin
        #: index of the first env of the worker processes (the envs before it are this process's)
        self.first_remote = envs_per_worker if main_worker else 0
        self.closed = False
        self._waiting = False
        self._shm: SharedMemory | None = None
        self._local: _WorkerEnvs | None = None
        self.remotes: list[Connection] = []
        self.processes: list[mp.process.BaseProcess] = []
        # the block's size needs the spaces, which only a built env knows: each worker sends them first
        self._shm_name = f"carla_rl_vec_{os.getpid()}_{id(self):x}"
        try:
            for first in range(self.first_remote, num_envs, envs_per_worker):
                remote, work_remote = ctx.Pipe()
                fns = CloudpickleWrapper(list(env_fns[first : first + envs_per_worker]))
                process = ctx.Process(
                    target=_worker, args=(work_remote, fns, first, self._shm_name, num_envs, spin), daemon=True
                )
                process.start()
                work_remote.close()  # so that the worker's death closes the pipe (EOF here, not a hang)
                self.remotes.append(remote)
                self.processes.append(process)
            self._waiters = [_Waiter(remote, spin) for remote in self.remotes]
            if main_worker:  # built while the worker processes build theirs
                self._local = _WorkerEnvs(env_fns[:envs_per_worker], 0)
            spaces_ = [self._recv(w) for w in range(len(self.remotes))]
            if self._local is not None:
                spaces_.insert(0, (self._local.envs[0].observation_space, self._local.envs[0].action_space))
            observation_space, action_space = spaces_[0]
            self._shm = SharedMemory(
                name=self._shm_name, create=True, size=_Buffers.nbytes(num_envs, observation_space, action_space)
            )
            self._buffers = _Buffers(self._shm, num_envs, observation_space, action_space)
            if self._local is not None:
                self._local.buffers = self._buffers
            for remote in self.remotes:
                remote.send(True)
        except BaseException:
            self._abort()
            raise
        super().__init__(num_envs, observation_space, action_space)

    # ------------------------------------------------------------------ messaging

    def _recv(self, worker: int) -> Any:
        """The reply of worker process ``worker``, or a :class:`WorkerError` when it raised or died."""
        try:
            status, payload = self.remotes[worker].recv()
        except (EOFError, ConnectionResetError):
            self.processes[worker].join(timeout=1.0)
            code = self.processes[worker].exitcode
            first = self.first_remote + worker * self.envs_per_worker
            self._abort()
            raise WorkerError(
                f"ShmVecEnv: the worker of envs {first}-{first + self.envs_per_worker - 1} died (exit code {code})"
            ) from None
        if status == "error":
            index, text = payload
            self._abort()
            raise WorkerError(f"ShmVecEnv: env {index} raised in its worker:\n{text}")
        return payload

    def _call(self, index: int, cmd: str, *data: Any) -> Any:
        """``cmd`` (see ``_WorkerEnvs.call``) on env ``index``, here or in its worker process."""
        if index < self.first_remote:
            return self._local.call(cmd, (index, *data))
        worker, j = divmod(index - self.first_remote, self.envs_per_worker)
        self.remotes[worker].send((cmd, (j, *data)))
        return self._recv(worker)

    def _abort(self) -> None:
        """Stop every worker process at once (after an error: the others may be mid-step) and free the block."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5.0)
        if self._local is not None:
            self._local.buffers = None
        self._release()

    def _release(self) -> None:
        for remote in self.remotes:
            remote.close()
        if self._shm is not None:
            del self._buffers
            self._shm.close()
            self._shm.unlink()
            self._shm = None
        self.closed = True

    # ------------------------------------------------------------------ VecEnv

    def reset(self):
        seeds_options = list(zip(self._seeds, self._options))
        k = self.envs_per_worker
        for w, remote in enumerate(self.remotes):
            first = self.first_remote + w * k
            remote.send(("reset", seeds_options[first : first + k]))
        if self._local is not None:
            for index, info in self._local.reset(seeds_options[:k]).items():
                self.reset_infos[index] = info
        for w in range(len(self.remotes)):
            for index, info in self._recv(w).items():
                self.reset_infos[index] = info
        self._reset_seeds()
        self._reset_options()
        return self._buffers.read_obs(self.observation_space)

    def step_async(self, actions: np.ndarray) -> None:
        self._buffers.actions[:] = np.asarray(actions).reshape(self._buffers.actions.shape)
        for remote in self.remotes:
            remote.send(("step", None))
        self._waiting = True

    def step_wait(self):
        infos: list[dict[str, Any]] = []
        if self._local is not None:
            infos, reset_infos = self._local.step()
            for index, info in reset_infos.items():
                self.reset_infos[index] = info
        for w in range(len(self.remotes)):
            self._waiters[w].wait()
            worker_infos, reset_infos = self._recv(w)
            infos += worker_infos
            for index, info in reset_infos.items():
                self.reset_infos[index] = info
        self._waiting = False
        buffers = self._buffers
        return buffers.read_obs(self.observation_space), buffers.rewards.copy(), buffers.dones.copy(), infos

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._waiting:
                for w in range(len(self.remotes)):
                    self._recv(w)
            for remote in self.remotes:
                remote.send(("close", None))
            for w in range(len(self.remotes)):
                self._recv(w)
        except (WorkerError, BrokenPipeError):  # a worker already gone (^C reached the process group): _abort ran
            if not self.closed:
                self._abort()
            return
        for process in self.processes:
            process.join()
        if self._local is not None:
            self._local.close()
            self._local.buffers = None
        self._release()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [self._call(i, "get_attr", attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._get_indices(indices):
            self._call(i, "set_attr", attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return [
            self._call(i, "env_method", method_name, method_args, method_kwargs) for i in self._get_indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [self._call(i, "is_wrapped", wrapper_class) for i in self._get_indices(indices)]

    def resume_states(self) -> list[dict[str, Any] | None]:
        """Every env's episode in progress for a checkpoint (see ``carla_rl_agents.resume``), with the
        scenarios drawn ahead accounted for."""
        return [self._call(i, "resume_state") for i in range(self.num_envs)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [self._call(i, "env_method", "render", (), {}) for i in range(self.num_envs)]


def _training_env(make: Callable[[], gym.Env]) -> gym.Env:
    """``make()`` in a ResumableEnv. In a worker process it also ignores SIGINT: a Ctrl-C on the terminal
    reaches the whole process group, and the trainer, not each worker, decides how training stops (it
    finishes the step, writes its checkpoint, then closes the workers)."""
    if mp.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return ResumableEnv(make())


def make_vec_env(env_fns: Sequence[Callable[[], gym.Env]], train: dict[str, Any]) -> VecEnv:
    """The training VecEnv of ``env_fns`` under a run config's ``train`` section.

    ``num_workers`` 0 (the default): a ``DummyVecEnv`` for one env, a ``SubprocVecEnv`` (one process per env)
    for more, as before. ``num_workers`` N > 0: a :class:`ShmVecEnv` of N workers with ``envs_per_worker`` envs
    each, which must make ``num_envs`` (this process is the first worker); torch's threads in this process
    are then capped to the cores the other workers leave (at least one), as its OpenMP threads otherwise spin
    on the cores the envs step on (PPO on two envs on two cores: 60 steps/s with torch's default two threads,
    198 with one), and the workers poll for messages only when there is a core for each. Every env is wrapped
    in :class:`~carla_rl_agents.resume.ResumableEnv` (exact resume).
    """
    env_fns = [functools.partial(_training_env, fn) for fn in env_fns]
    workers, per_worker = int(train.get("num_workers", 0)), int(train.get("envs_per_worker", 1))
    if workers < 0:
        raise ConfigError(RUN_CONFIG_SOURCE, "train.num_workers", f"must be 0 or more, got {workers}")
    if workers == 0:
        return SubprocVecEnv(list(env_fns)) if len(env_fns) > 1 else DummyVecEnv(list(env_fns))
    if per_worker < 1 or workers * per_worker != len(env_fns):
        raise ConfigError(
            RUN_CONFIG_SOURCE,
            "train.envs_per_worker",
            f"{workers} workers x {per_worker} envs per worker must equal train.num_envs = {len(env_fns)}",
        )
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cores - workers + 1)))
    return ShmVecEnv(env_fns, envs_per_worker=per_worker, spin=0.002 if workers <= cores else 0.0)
