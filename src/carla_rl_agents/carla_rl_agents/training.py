"""Training runs: a run directory with the config, logs, periodic checkpoints and a learning curve.

Layout of a run directory::

    config.yaml          the run config (yaml.safe_dump), enough to rebuild the model
    checkpoints/         step_<num_timesteps>.ckpt, the ``train.keep_checkpoints`` newest (see checkpoints)
    tb/                  TensorBoard events and progress.csv (progress_resumed_at_<steps>.csv after a resume,
                         as SB3's CSV writer truncates its file)
    episodes.jsonl       one JSON object per finished training episode (steps, return, length, success,
                         termination reason, per-term reward sums)
    learning_curve.png   episode return and success rate over steps, drawn when train() returns

Logged scalars, with the step count as x axis: SB3's own (``rollout/ep_rew_mean`` and ``ep_len_mean``, the
``train/`` losses, entropy, approximate KL (PPO), explained variance, ``time/fps`` = steps/s), plus
``episode/return``, ``episode/length``, ``episode/success`` (termination reason ``goal_reached``) and
``reward_terms/<name>`` (per-episode sums of ``info["reward_terms"]``), averaged over the episodes that
ended since the last dump.

Checkpoints are written when a rollout starts, after the previous rollout's policy update, every
``train.checkpoint_every`` updates (``carla-rl train --checkpoint-every STEPS`` sets it from steps), and once
more when training completes. ``Trainer.resume`` continues from the newest
complete one with ``learn(total - done, reset_num_timesteps=False)`` and restores the weights, optimizer
states (ACKTR's K-FAC state included), ``num_timesteps``, ``_n_updates``, ``_episode_num``, SB3's episode
statistics, the reward normalisation statistics, every RNG state and SB3's rollout state between rollouts.

The envs' episodes in progress are replayed (``carla_rl_agents.resume``) when every env is a
``ResumableEnv`` (``shm_vec_env.make_vec_env`` wraps them: ``carla-rl train --inprocess``, with a
DummyVecEnv, SubprocVecEnv or ShmVecEnv): each env is reset with the random sources and arguments of its
episode's reset and stepped through the episode's actions, so a resumed run equals the uninterrupted one
bit for bit as long as an env's episode is a function of those (the in-process env without the simulator's own
traffic). Otherwise (the ROS env: the env nodes' scenario sources are not reachable over ROS) the resumed
run starts with a reset of every env, seeded with ``train.seed + num_timesteps``, and the episodes in
progress at the checkpoint are dropped (their steps were trained on and stay counted): the same training
from other env trajectories.

Ctrl-C (SIGINT) or SIGTERM during ``train()`` stops after the env step in progress (during a policy update:
at the first step after it; the ROS env's waits are cut at once), writes the checkpoint of the current
rollout's start (the weights do not change during a rollout, so it is exact; the steps since are trained
again), draws the learning curve, says where both are and raises
:class:`TrainingStopped`.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch as th
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize, is_vecenv_wrapped
from tqdm import tqdm

from carla_rl_agents.checkpoints import (
    Snapshot,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_training_checkpoint,
    prune_checkpoints,
    read_meta,
    snapshot,
    write_checkpoint,
)
from carla_rl_agents.evaluation import GOAL_REACHED
from carla_rl_agents.models import ALGORITHM_CLASSES, RUN_CONFIG_SOURCE, build_model
from carla_rl_agents.resume import restore_vec_env, vec_env_state
from carla_rl_common.config import ConfigError

#: Builds the training VecEnv of a run config (``train.num_envs`` envs).
EnvFactory = Callable[[dict[str, Any]], VecEnv]


def wrap_training_env(venv: VecEnv, config: dict[str, Any]) -> VecEnv:
    """``venv`` with episode statistics (VecMonitor, unless monitored already) and, with
    ``train.normalize_reward``, reward normalisation (VecNormalize at the algorithm's gamma)."""
    if not (is_vecenv_wrapped(venv, VecMonitor) or all(venv.env_is_wrapped(Monitor))):
        venv = VecMonitor(venv)
    if config["train"]["normalize_reward"]:
        parameters = inspect.signature(ALGORITHM_CLASSES[config["algo"]].__init__).parameters
        gamma = config["algo_kwargs"].get("gamma", parameters["gamma"].default)
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=gamma)
    return venv


def _base_env(venv: VecEnv) -> VecEnv:
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return venv


def _pause(venv: VecEnv, paused: bool) -> None:
    """``venv.pause(paused)`` when the env (or one it wraps) has that method (the ROS env does)."""
    pause = getattr(venv, "pause", None)
    if callable(pause):
        pause(paused)


class PauseEnvCallback(BaseCallback):
    """Pauses the env while the policy update runs: ``pause(True)`` at rollout end, ``pause(False)`` at
    rollout start, so a simulator does not run on (or time out) between the last step and the next one."""

    def _on_rollout_end(self) -> None:
        _pause(self.training_env, True)

    def _on_rollout_start(self) -> None:
        _pause(self.training_env, False)

    def _on_step(self) -> bool:
        return True


class RolloutCallback(BaseCallback):
    """Counts policy updates and tells the Trainer where each rollout starts and ends: ``at_start(updates)``
    when a rollout starts (the updated policy at a rollout boundary: where checkpoints are taken),
    ``at_end()`` when it has been collected (the update follows); ``_on_step`` stops training once
    ``stop_requested()`` (a signal came during an update).

    :param updates: updates done before this training session (from the resumed checkpoint)
    """

    def __init__(
        self,
        at_start: Callable[[int], None],
        at_end: Callable[[], None],
        stop_requested: Callable[[], bool],
        updates: int = 0,
    ):
        super().__init__()
        self.at_start, self.at_end, self.stop_requested, self.updates = at_start, at_end, stop_requested, updates

    def _on_rollout_end(self) -> None:
        self.updates += 1  # the update on this rollout follows at once
        self.at_end()

    def _on_rollout_start(self) -> None:
        self.at_start(self.updates)

    def _on_step(self) -> bool:
        return not self.stop_requested()


class TrainingStopped(KeyboardInterrupt):
    """Training stopped by a signal (Ctrl-C, SIGTERM); the checkpoint and the curve were written and named.

    A KeyboardInterrupt, so that what handles Ctrl-C (exit status 130) handles it.
    """

    def __init__(self, signal_name: str, num_timesteps: int, checkpoint: Path | None):
        super().__init__(f"stopped by {signal_name} at step {num_timesteps}")
        self.signal_name, self.num_timesteps, self.checkpoint = signal_name, num_timesteps, checkpoint


class EpisodeStatsCallback(BaseCallback):
    """Per finished episode: log return, length, success and reward-term sums, and append them to ``path``.

    Needs VecMonitor's ``info["episode"]`` (raw return and length, before reward normalisation).
    """

    def __init__(self, path: Path, term_sums: list[dict[str, float]] | None = None):
        """``term_sums``: the reward-term sums of the episodes in progress (a resumed run's), else none."""
        super().__init__()
        self.path = path
        self._file: TextIO | None = None
        self._term_sums: list[dict[str, float]] = [dict(sums) for sums in term_sums or ()]

    def _on_training_start(self) -> None:
        if len(self._term_sums) != self.training_env.num_envs:
            self._term_sums = [{} for _ in range(self.training_env.num_envs)]  # learn() starts with a reset
        self._file = open(self.path, "a")

    def _on_step(self) -> bool:
        for i, (info, done) in enumerate(zip(self.locals["infos"], self.locals["dones"])):
            sums = self._term_sums[i]
            for name, value in info.get("reward_terms", {}).items():
                sums[name] = sums.get(name, 0.0) + float(value)
            if done and "episode" in info:
                self._record(i, info)
        return True

    def _record(self, env_index: int, info: dict[str, Any]) -> None:
        reason = info.get("termination_reason", "")
        record = {
            "timesteps": self.num_timesteps,
            "env": env_index,
            "return": float(info["episode"]["r"]),
            "length": int(info["episode"]["l"]),
            "success": reason == GOAL_REACHED,
            "termination_reason": reason,
            "reward_terms": self._term_sums[env_index],
        }
        self._term_sums[env_index] = {}
        self.logger.record_mean("episode/return", record["return"])
        self.logger.record_mean("episode/length", record["length"])
        self.logger.record_mean("episode/success", float(record["success"]))
        for name, value in record["reward_terms"].items():
            self.logger.record_mean(f"reward_terms/{name}", value)
        assert self._file is not None
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def term_sums(self) -> list[dict[str, float]]:
        """The reward-term sums of the episodes in progress (a copy, for a checkpoint)."""
        return [dict(sums) for sums in self._term_sums]

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressCallback(BaseCallback):
    """tqdm's progress bar of the steps (rate, elapsed, ETA) on ``stream`` (default stderr): in place on a
    terminal (refreshed at most every ``tty_interval`` s), else one plain line every ``log_interval`` s and at
    the end (a log gets no carriage returns). A resumed run's bar starts at its checkpoint's step, and the
    rate counts this session's steps."""

    UNIT = " steps"

    def __init__(
        self, total_timesteps: int, stream: TextIO | None = None, tty_interval: float = 0.5, log_interval: float = 30.0
    ):
        super().__init__()
        self.total, self.stream = total_timesteps, stream
        self.tty_interval, self.log_interval = tty_interval, log_interval
        self._bar: tqdm | None = None
        self._start_time = self._last_line = 0.0
        self._initial = 0

    def _on_training_start(self) -> None:
        stream = self.stream or sys.stderr
        self._initial = min(self.num_timesteps, self.total)
        self._start_time = self._last_line = time.monotonic()
        if stream.isatty():
            self._bar = tqdm(
                total=self.total,
                initial=self._initial,
                unit=self.UNIT,
                file=stream,
                mininterval=self.tty_interval,
                dynamic_ncols=True,
            )

    def line(self) -> str:
        """The bar as one plain line: `` 40%|####      | 8000/20000 [01:05<01:37, 123.10 steps/s]``."""
        return tqdm.format_meter(
            min(self.num_timesteps, self.total),
            self.total,
            time.monotonic() - self._start_time,
            ncols=100,
            ascii=True,
            unit=self.UNIT,
            initial=self._initial,
        )

    def _on_step(self) -> bool:
        if self._bar is not None:
            self._bar.update(min(self.num_timesteps, self.total) - self._bar.n)
        elif time.monotonic() - self._last_line >= self.log_interval:
            self._write_line()
        return True

    def _write_line(self) -> None:
        self._last_line = time.monotonic()
        stream = self.stream or sys.stderr
        stream.write(self.line() + "\n")
        stream.flush()

    def _on_training_end(self) -> None:
        if self._bar is None:
            self._write_line()
        self.close()

    def close(self) -> None:
        """End the terminal bar (also after an exception, where SB3 does not end the training)."""
        if self._bar is not None:
            self._bar.update(min(self.num_timesteps, self.total) - self._bar.n)
            self._bar.close()
            self._bar = None


def read_episodes(path: str | Path) -> list[dict[str, Any]]:
    """The records of an ``episodes.jsonl`` (a line cut short by a crash is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _drop_episodes_after(path: Path, num_timesteps: int) -> None:
    """Forget the episodes that ended after a checkpoint: the resumed run plays those steps again."""
    kept = [r for r in read_episodes(path) if r["timesteps"] <= num_timesteps]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each index (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def plot_learning_curve(episodes_path: str | Path, out_path: str | Path, window: int = 20) -> Path:
    """Draw episode return (points and rolling mean) and success rate over steps into a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    records = sorted(read_episodes(episodes_path), key=lambda r: r["timesteps"])
    figure = Figure(figsize=(8, 6), layout="constrained")
    ax_return, ax_success = figure.subplots(2, 1, sharex=True)
    if records:
        steps = np.array([r["timesteps"] for r in records], dtype=float)
        returns = np.array([r["return"] for r in records], dtype=float)
        success = np.array([r["success"] for r in records], dtype=float)
        ax_return.plot(steps, returns, ".", alpha=0.3, label="episode")
        ax_return.plot(steps, _rolling_mean(returns, window), label=f"mean of {window}")
        # above the axes, not over them: the newest points are at the right edge, where a legend would sit
        ax_return.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False)
        ax_success.plot(steps, _rolling_mean(success, window))
    else:
        ax_return.text(0.5, 0.5, "no finished episodes", ha="center", va="center", transform=ax_return.transAxes)
    ax_return.set_ylabel("episode return")
    ax_success.set_ylabel(f"success rate (last {window})")
    ax_success.set_ylim(-0.05, 1.05)
    ax_success.set_xlabel("steps")
    out_path = Path(out_path)
    figure.savefig(out_path, dpi=100)
    return out_path


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: the signals that stop training with a final checkpoint
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Trainer:
    """Trains the model of a run config on an env, in ``run_dir`` (layout in the module docstring).

    :param config: the run config (``settings.load_run_config``)
    :param env: the training VecEnv, or a factory that builds it from the config (the Trainer then owns and
        closes it); it is wrapped in VecMonitor and, with ``train.normalize_reward``, VecNormalize
    :param run_dir: the run directory; a new run refuses one that already holds checkpoints
    :param checkpoint: continue from this checkpoint (its config must be ``config``); see :meth:`resume`
    :param log_interval: rollouts between log dumps (None: the algorithm's default)
    :param progress: print a progress bar with ETA to stderr
    :param say: where the lines naming the final checkpoint and the learning curve go (default: stderr)
    """

    def __init__(
        self,
        config: dict[str, Any],
        env: VecEnv | EnvFactory,
        run_dir: str | Path,
        *,
        checkpoint: str | Path | None = None,
        log_interval: int | None = None,
        progress: bool = True,
        say: Callable[[str], None] = _say,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.log_interval = log_interval
        self.progress = progress
        self.say = say
        #: whether a resumed run replays the envs' episodes in progress (exact) or starts new ones
        self.exact_resume = checkpoint is None
        self._term_sums: list[dict[str, float]] | None = None
        self._snapshot: Snapshot | None = None
        self._phase = "setup"  # setup | rollout | update: a signal stops at once except during an update
        self._stop_signal: int | None = None
        if checkpoint is None and list_checkpoints(self.run_dir):
            raise FileExistsError(
                f"{self.run_dir} holds checkpoints of an earlier run: resume it "
                "(Trainer.resume) or choose another run directory"
            )
        self._owns_env = not isinstance(env, VecEnv)
        venv = env(config) if self._owns_env else env
        try:
            self.env = wrap_training_env(venv, config)
            self.model, self.updates = self._model(venv.num_envs, checkpoint)
        except BaseException:
            if self._owns_env:
                venv.close()
            raise
        csv_name = f"progress_resumed_at_{self.model.num_timesteps}.csv" if checkpoint else "progress.csv"
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        tb_dir = self.run_dir / "tb"
        tb_dir.mkdir(exist_ok=True)
        self.model.set_logger(
            Logger(str(tb_dir), [TensorBoardOutputFormat(str(tb_dir)), CSVOutputFormat(str(tb_dir / csv_name))])
        )

    def _model(self, num_envs: int, checkpoint: str | Path | None) -> tuple[BaseAlgorithm, int]:
        """A new model, or the checkpoint's (then the envs' episodes in progress are replayed, or the envs
        reseeded, and the episode log is cut back), and the number of policy updates done."""
        config = self.config
        if num_envs != config["train"]["num_envs"]:
            raise ConfigError(
                RUN_CONFIG_SOURCE, "train.num_envs", f"{config['train']['num_envs']}, but the env has {num_envs}"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            return build_model(config, self.env), 0
        meta = read_meta(checkpoint, expected_algo=config["algo"])
        if meta["config"] != config:
            raise ValueError(f"{checkpoint} was trained with another config than the one given")
        model, resume = load_training_checkpoint(checkpoint, self.env, expected_algo=config["algo"])
        if resume is not None and resume["env"] is not None and vec_env_state(model.env) is not None:
            self._continue_rollouts(model, resume)
            self.exact_resume = True
        else:
            self.env.seed(int(config["train"]["seed"]) + model.num_timesteps)
        _drop_episodes_after(self.episodes_path, model.num_timesteps)
        return model, int(meta["extra"].get("updates", 0))

    def _continue_rollouts(self, model: BaseAlgorithm, resume: dict[str, Any]) -> None:
        """Put the envs and SB3's rollout state where they were at the checkpoint (``learn`` then does not
        reset the envs: ``_last_obs`` is set)."""
        model._last_obs = restore_vec_env(model.env, resume["env"])
        model._last_episode_starts = resume["last_episode_starts"].numpy().copy()
        if resume.get("last_obs_pose") is not None:  # on-policy HER: the ego pose at _last_obs
            model._last_obs_pose = resume["last_obs_pose"].numpy().copy()
        self._term_sums = resume["term_sums"]

    @classmethod
    def resume(
        cls, run_dir: str | Path, env: VecEnv | EnvFactory, expected_algo: str | None = None, **kwargs: Any
    ) -> Trainer:
        """A Trainer that continues ``run_dir`` from its newest complete checkpoint, with that checkpoint's
        config (keyword arguments as for the constructor); ``expected_algo``: refuse a run of another one."""
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"{run_dir}: no complete checkpoint to resume from")
        return cls(read_meta(checkpoint, expected_algo)["config"], env, run_dir, checkpoint=checkpoint, **kwargs)

    @property
    def episodes_path(self) -> Path:
        """The run's episode log (``read_episodes`` reads it)."""
        return self.run_dir / "episodes.jsonl"

    @property
    def learning_curve_path(self) -> Path:
        return self.run_dir / "learning_curve.png"

    def _resume_state(self, stats: EpisodeStatsCallback | None) -> dict[str, Any]:
        """What a checkpoint needs to continue the rollouts exactly (see ``checkpoints``)."""
        model = self.model
        pose = getattr(model, "_last_obs_pose", None)
        starts = model._last_episode_starts
        return {
            "env": vec_env_state(model.env),
            "last_episode_starts": None if starts is None else th.from_numpy(np.array(starts, dtype=bool)),
            "last_obs_pose": None if pose is None else th.from_numpy(np.array(pose, dtype=np.float64)),
            "term_sums": stats.term_sums() if stats is not None else [],
        }

    def _take_snapshot(self, stats: EpisodeStatsCallback | None = None) -> Snapshot:
        return snapshot(self.model, self.config, {"updates": self.updates}, self._resume_state(stats))

    def _write(self, taken: Snapshot) -> Path:
        path = write_checkpoint(self.model, checkpoint_path(self.run_dir, taken.num_timesteps), taken)
        prune_checkpoints(self.run_dir, self.config["train"]["keep_checkpoints"])
        return path

    def save_checkpoint(self) -> Path:
        """Checkpoint the model now (at a rollout boundary for exact resume) and prune old checkpoints."""
        return self._write(self._take_snapshot())

    def _checkpoint_due(self, updates: int, session_start: int) -> bool:
        every = max(int(self.config["train"]["checkpoint_every"]), 1)
        return updates != session_start and updates % every == 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Stop after the env step in progress (``RolloutCallback``), or at once during a rollout on an env whose
        waits may be cut (``interruptible``: the ROS env, whose step can wait for seconds). Never in the middle of
        an update, or of a message to a worker process (its pipe would be left half read)."""
        self._stop_signal = signum
        if self._phase == "rollout" and getattr(_base_env(self.env), "interruptible", False):
            raise KeyboardInterrupt

    def train(self, callbacks: Sequence[BaseCallback] = ()) -> BaseAlgorithm:
        """Train up to ``train.total_timesteps`` steps, then checkpoint and draw the learning curve.

        SIGINT and SIGTERM (in the main thread) stop training with the checkpoint of the current rollout's
        start and the curve (see the module docstring), then raise :class:`TrainingStopped`; so does a
        KeyboardInterrupt. Training that a callback stops early writes no final checkpoint; an exception
        during a rollout (an env that did not come back) writes that rollout's start before it propagates.

        :param callbacks: more SB3 callbacks, called after the Trainer's own
        """
        total = int(self.config["train"]["total_timesteps"])
        if self.model.num_timesteps >= total:
            self._finish()
            return self.model
        stats = EpisodeStatsCallback(self.episodes_path, self._term_sums)
        session_start = self.updates

        def at_start(updates: int) -> None:
            self._phase = "update"  # a signal now waits: the snapshot is being taken
            self.updates = updates
            self._snapshot = self._take_snapshot(stats)
            if self._checkpoint_due(updates, session_start):
                self._write(self._snapshot)
            self._phase = "rollout"

        def at_end() -> None:
            self._phase = "update"

        rollouts = RolloutCallback(at_start, at_end, lambda: self._stop_signal is not None, self.updates)
        own: list[BaseCallback] = [stats, rollouts, PauseEnvCallback()]
        progress = ProgressCallback(total) if self.progress else None
        if progress is not None:
            own.append(progress)
        learn_kwargs = {} if self.log_interval is None else {"log_interval": self.log_interval}
        handlers = self._install_signal_handlers()
        self._phase, self._stop_signal = "setup", None
        failure: BaseException | None = None
        try:
            self.model.learn(
                total - self.model.num_timesteps,
                callback=CallbackList([*own, *callbacks]),
                reset_num_timesteps=self.model.num_timesteps == 0 and self.model._last_obs is None,
                **learn_kwargs,
            )
        except KeyboardInterrupt:
            if self._stop_signal is None:
                self._stop_signal = signal.SIGINT
        except Exception as exc:
            # after a stop signal, an error is our handler's KeyboardInterrupt raised inside a C extension's call
            # (pybind11 turns it into "RuntimeError: Unable to convert call argument"): the stop, not a failure
            if self._stop_signal is None:
                failure = exc
        finally:
            self._restore_signal_handlers(handlers)
            if progress is not None:
                progress.close()
            _pause(self.env, False)
        self.updates = rollouts.updates
        # the rollout's start describes the model unless an update was cut short (a foreign KeyboardInterrupt)
        resumable = self._snapshot if self._phase == "rollout" else None
        if failure is not None:
            if resumable is not None:
                self.say(f"checkpoint at step {resumable.num_timesteps}: {self._write(resumable)}")
            raise failure
        if self._stop_signal is not None and self.model.num_timesteps < total:
            path = self._finish(self._write(resumable) if resumable is not None else None)
            raise TrainingStopped(signal.Signals(self._stop_signal).name, self.model.num_timesteps, path)
        if self.model.num_timesteps >= total:
            self._finish(self.save_checkpoint())
        else:
            plot_learning_curve(self.episodes_path, self.learning_curve_path)  # a callback stopped it
        return self.model

    def _finish(self, checkpoint: Path | None = None) -> Path | None:
        """Draw the learning curve and say where it and the final checkpoint (default: the newest) are."""
        checkpoint = checkpoint or latest_checkpoint(self.run_dir)
        if checkpoint is not None:
            self.say(f"checkpoint at step {read_meta(checkpoint)['num_timesteps']}: {checkpoint}")
        else:
            self.say("no checkpoint: stopped before the first rollout")
        self.say(f"learning curve: {plot_learning_curve(self.episodes_path, self.learning_curve_path)}")
        return checkpoint

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}

    @staticmethod
    def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
        for signum, handler in handlers.items():
            if handler is None:  # installed outside Python (rclpy's): Python's own default instead
                handler = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, handler)

    def close(self) -> None:
        """Close the log files, and the env if the Trainer built it."""
        self.model.logger.close()
        if self._owns_env:
            self.env.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
