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
``train.checkpoint_every`` updates, and once more when training completes. ``Trainer.resume`` continues
from the newest complete one with ``learn(total - done, reset_num_timesteps=False)`` and restores the
weights, optimizer states (ACKTR's K-FAC state included), ``num_timesteps``, ``_n_updates``,
``_episode_num``, SB3's episode statistics, the reward normalisation statistics and every RNG state.

The env's state is not part of a checkpoint (a simulator cannot be saved): the resumed run starts with a
reset of every env, seeded with ``train.seed + num_timesteps`` (a new scenario sequence rather than a replay
of the run's first episodes), and the episodes in progress at the checkpoint are dropped (their steps were
trained on and stay counted). A resumed run therefore equals the uninterrupted one exactly, up to float
rounding, when the checkpoint fell on an episode boundary of every env and the env's reset does not depend
on its seed; otherwise it continues the same training from other env trajectories.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize, is_vecenv_wrapped

from carla_rl_agents.checkpoints import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    read_meta,
    save_checkpoint,
)
from carla_rl_agents.evaluation import GOAL_REACHED
from carla_rl_agents.models import ALGORITHM_CLASSES, RUN_CONFIG_SOURCE, build_model
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


class RolloutCheckpointCallback(BaseCallback):
    """Calls ``save(updates)`` when a rollout starts and ``updates`` (policy updates so far, i.e. rollouts
    collected) is a new multiple of ``every``: the state then is the updated policy at a rollout boundary.

    :param save: writes the checkpoint, given the number of updates
    :param every: updates between checkpoints
    :param updates: updates done before this training session (from the resumed checkpoint)
    """

    def __init__(self, save: Callable[[int], Path], every: int, updates: int = 0):
        super().__init__()
        self.save, self.every, self.updates = save, max(int(every), 1), updates
        self._session_start = updates

    def _on_rollout_end(self) -> None:
        self.updates += 1  # the update on this rollout follows at once

    def _on_rollout_start(self) -> None:
        if self.updates != self._session_start and self.updates % self.every == 0:
            self.save(self.updates)

    def _on_step(self) -> bool:
        return True


class EpisodeStatsCallback(BaseCallback):
    """Per finished episode: log return, length, success and reward-term sums, and append them to ``path``.

    Needs VecMonitor's ``info["episode"]`` (raw return and length, before reward normalisation).
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self._file: TextIO | None = None
        self._term_sums: list[dict[str, float]] = []

    def _on_training_start(self) -> None:
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

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressCallback(BaseCallback):
    """A progress bar with steps/s and ETA on ``stream`` (default stderr), updated after a rollout at most
    every ``tty_interval`` seconds in place on a terminal, else one line every ``log_interval`` seconds
    (tqdm and rich, which SB3's ``progress_bar`` needs, are not dependencies)."""

    def __init__(
        self,
        total_timesteps: int,
        stream: TextIO | None = None,
        tty_interval: float = 1.0,
        log_interval: float = 30.0,
        width: int = 30,
    ):
        super().__init__()
        self.total, self.stream, self.width = total_timesteps, stream, width
        self.tty_interval, self.log_interval = tty_interval, log_interval
        self._start_time = self._last_print = 0.0
        self._start_steps = 0

    def _on_training_start(self) -> None:
        self._start_time = self._last_print = time.perf_counter()
        self._start_steps = self.num_timesteps

    def line(self) -> str:
        """``[#####-----]  40.0%  8000/20000 steps  123 steps/s  ETA 0:01:37``."""
        done = min(self.num_timesteps, self.total)
        fraction = done / self.total if self.total else 1.0
        elapsed = time.perf_counter() - self._start_time
        rate = (self.num_timesteps - self._start_steps) / elapsed if elapsed > 0 else 0.0
        eta = _format_seconds((self.total - done) / rate) if rate > 0 else "?"
        bar = "#" * round(fraction * self.width)
        return (
            f"[{bar:-<{self.width}}] {100 * fraction:5.1f}%  {done}/{self.total} steps  {rate:.0f} steps/s  ETA {eta}"
        )

    def _on_rollout_end(self) -> None:
        stream = self.stream or sys.stderr
        tty = stream.isatty()
        now = time.perf_counter()
        if now - self._last_print >= (self.tty_interval if tty else self.log_interval):
            self._last_print = now
            stream.write(self.line() + ("\r" if tty else "\n"))
            stream.flush()

    def _on_training_end(self) -> None:
        stream = self.stream or sys.stderr
        stream.write(self.line() + "\n")
        stream.flush()

    def _on_step(self) -> bool:
        return True


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


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
        ax_return.legend(loc="lower right")
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


class Trainer:
    """Trains the model of a run config on an env, in ``run_dir`` (layout in the module docstring).

    :param config: the run config (``settings.load_run_config``)
    :param env: the training VecEnv, or a factory that builds it from the config (the Trainer then owns and
        closes it); it is wrapped in VecMonitor and, with ``train.normalize_reward``, VecNormalize
    :param run_dir: the run directory; a new run refuses one that already holds checkpoints
    :param checkpoint: continue from this checkpoint (its config must be ``config``); see :meth:`resume`
    :param log_interval: rollouts between log dumps (None: the algorithm's default)
    :param progress: print a progress bar with ETA to stderr
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
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.log_interval = log_interval
        self.progress = progress
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
        """A new model, or the checkpoint's (then the env is reseeded and the episode log cut back), and the
        number of policy updates done."""
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
        model = load_checkpoint(checkpoint, self.env, expected_algo=config["algo"])
        self.env.seed(int(config["train"]["seed"]) + model.num_timesteps)
        _drop_episodes_after(self.episodes_path, model.num_timesteps)
        return model, int(meta["extra"].get("updates", 0))

    @classmethod
    def resume(cls, run_dir: str | Path, env: VecEnv | EnvFactory, **kwargs: Any) -> Trainer:
        """A Trainer that continues ``run_dir`` from its newest complete checkpoint, with that checkpoint's
        config (keyword arguments as for the constructor)."""
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"{run_dir}: no complete checkpoint to resume from")
        return cls(read_meta(checkpoint)["config"], env, run_dir, checkpoint=checkpoint, **kwargs)

    @property
    def episodes_path(self) -> Path:
        """The run's episode log (``read_episodes`` reads it)."""
        return self.run_dir / "episodes.jsonl"

    def save_checkpoint(self) -> Path:
        """Checkpoint the model now (at a rollout boundary for exact resume) and prune old checkpoints."""
        path = save_checkpoint(
            self.model,
            checkpoint_path(self.run_dir, self.model.num_timesteps),
            self.config,
            extra={"updates": self.updates},
        )
        prune_checkpoints(self.run_dir, self.config["train"]["keep_checkpoints"])
        return path

    def _save_after(self, updates: int) -> Path:
        self.updates = updates
        return self.save_checkpoint()

    def train(self, callbacks: Sequence[BaseCallback] = ()) -> BaseAlgorithm:
        """Train up to ``train.total_timesteps`` steps, then checkpoint and draw the learning curve.

        Training that a callback stops early (or an exception) writes no final checkpoint: the newest
        periodic one, at a rollout boundary, is the point to resume from.

        :param callbacks: more SB3 callbacks, called after the Trainer's own
        """
        total = int(self.config["train"]["total_timesteps"])
        if self.model.num_timesteps < total:
            checkpoints = RolloutCheckpointCallback(
                self._save_after, self.config["train"]["checkpoint_every"], self.updates
            )
            own: list[BaseCallback] = [EpisodeStatsCallback(self.episodes_path), checkpoints, PauseEnvCallback()]
            if self.progress:
                own.append(ProgressCallback(total))
            learn_kwargs = {} if self.log_interval is None else {"log_interval": self.log_interval}
            try:
                self.model.learn(
                    total - self.model.num_timesteps,
                    callback=CallbackList([*own, *callbacks]),
                    reset_num_timesteps=self.model.num_timesteps == 0,
                    **learn_kwargs,
                )
            finally:
                _pause(self.env, False)
            self.updates = checkpoints.updates
            if self.model.num_timesteps >= total:
                self.save_checkpoint()
        plot_learning_curve(self.episodes_path, self.run_dir / "learning_curve.png")
        return self.model

    def close(self) -> None:
        """Close the log files, and the env if the Trainer built it."""
        self.model.logger.close()
        if self._owns_env:
            self.env.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
