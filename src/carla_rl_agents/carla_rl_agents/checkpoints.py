"""carla-rl checkpoints: one file per checkpoint, safe to load, enough to resume training exactly.

A checkpoint is a single file (``<run_dir>/checkpoints/step_<num_timesteps>.ckpt``, a zip archive) that
holds two members:

* ``meta.json``: the format name and version, the algorithm, the full run config, the observation and
  action spaces the policy was built for (``carla_rl_common.spaces`` JSON; SB3 transposes channel-last
  images to channel-first, so image spaces appear as the policy sees them), the step counters
  (``num_timesteps``, ``_n_updates``, ``_episode_num``), SB3's episode statistics windows (for continuous
  ``rollout/ep_rew_mean`` logging) and the caller's ``extra`` JSON (the Trainer's count of policy updates).
* ``state.pt``: ``torch.save`` of plain containers of tensors, numbers and strings: the state dicts that
  ``model.get_parameters()`` returns (the policy and every optimizer, ACKTR's K-FAC factors, eigenbases,
  momentum and step counter included), the algorithm's other tensors (SAC's entropy coefficient), the RNG
  states (torch CPU and CUDA, numpy's global generator, Python's ``random``, and the model's numpy
  ``Generator`` attributes such as on-policy HER's goal sampler and the action space's) and the reward
  normalisation statistics of a ``VecNormalize`` around the env.

Loading reads ``meta.json`` with ``json`` and ``state.pt`` with ``torch.load(weights_only=True)`` only, so a
checkpoint cannot run code: a payload that needs unpickling of anything else is refused. SB3's own
``save``/``load`` (cloudpickle) is never used. The model is rebuilt from the saved run config with
:func:`carla_rl_agents.models.build_model`, after the env's spaces were checked against the saved ones.

A third, optional part of ``state.pt``, ``resume``, holds what replays the envs' episodes in progress
(``carla_rl_agents.resume``: each env's reset arguments, random sources and actions since its reset, the
episode statistics in progress) and the rollout state SB3 keeps between rollouts (``_last_episode_starts``,
on-policy HER's ``_last_obs_pose``); the Trainer writes it. Not in a checkpoint: the simulator itself (an
episode is replayed, not restored), the rollout being collected (checkpoints are taken at rollout starts),
an off-policy replay buffer (her_sac resumes with an empty one) and the logger's files.

Checkpoints are written to a hidden temporary file beside the target, fsynced and renamed over the target
(``os.replace``, atomic on POSIX), so a crash never leaves a half-written file under a checkpoint name.
"""

from __future__ import annotations

import io
import json
import operator
import os
import pickle
import random
import re
import warnings
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import DummyVecEnv

from carla_rl_agents.models import ALGORITHM_CLASSES, build_model
from carla_rl_agents.settings import load_run_config
from carla_rl_common.config import ConfigError, short
from carla_rl_common.spaces import space_from_dict, space_to_dict

FORMAT = "carla-rl-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".ckpt"
META_NAME = "meta.json"
STATE_NAME = "state.pt"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.ckpt$")
# uncompressed bytes a member may have: far above any policy of ours, far below a zip bomb's
MAX_MEMBER_BYTES = {META_NAME: 64 << 20, STATE_NAME: 2 << 30}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (corrupt, foreign, unsafe or for another env); names the file."""


# --- files of a run -------------------------------------------------------------------------------------
def checkpoint_path(run_dir: str | Path, num_timesteps: int) -> Path:
    """Where the checkpoint of ``run_dir`` at ``num_timesteps`` lives."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{num_timesteps:010d}{SUFFIX}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The checkpoints of ``run_dir``, oldest (fewest steps) first; temporary files are never listed."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of ``run_dir`` that reads as complete: its meta validates and every member's CRC
    matches (a file cut short or damaged after the write is skipped with a warning, the one before is used)."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            read_meta(path)
            _check_crcs(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        return path
    return None


RUN_CONFIG_NAME = "config.yaml"


def read_run_config(run_dir: str | Path, expected_algo: str | None = None) -> dict[str, Any]:
    """The validated run config of ``run_dir`` (its ``config.yaml``), for resuming it.

    :param expected_algo: the algorithm the caller means to train (e.g. ``--algo``): another one is an error
    :raises ConfigError: naming the file: missing, unreadable, not UTF-8 text, not valid YAML or not a valid
        run config, or of another algorithm than ``expected_algo``
    """
    path = Path(run_dir) / RUN_CONFIG_NAME
    try:
        path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such file: not a training run directory") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not UTF-8 text, corrupt? (byte {exc.start})") from None
    config = load_run_config([path])
    if expected_algo is not None and config["algo"] != expected_algo:
        raise ConfigError(
            str(path), "algo", f"this run trains {config['algo']!r}, not {expected_algo!r} (resume it without --algo)"
        )
    return config


def _check_crcs(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({exc})") from exc
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint ({bad} fails its CRC check)")


def _stale_temporaries(directory: Path) -> list[Path]:
    """Temporary files of checkpoint writes whose writer is gone (killed mid-write): they only fill the disk."""
    stale = []
    for p in directory.glob(".step_*.tmp") if directory.is_dir() else ():
        pid = p.name.rsplit(".", 2)[-2]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.append(p)
        except (ValueError, PermissionError):
            continue
    return stale


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints of ``run_dir``, and the temporary files of writes that
    were killed; returns the deleted paths."""
    doomed = list_checkpoints(run_dir)[: -max(keep, 1)] + _stale_temporaries(Path(run_dir) / CHECKPOINT_DIR)
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


# --- saving ---------------------------------------------------------------------------------------------
def _plain_generator_state(name: str, generator: np.random.Generator) -> dict[str, Any]:
    """The bit generator's state, which must be plain ints and strings (PCG64, numpy's default)."""
    state = generator.bit_generator.state

    def plain(value: Any) -> bool:
        return isinstance(value, (int, str)) or (isinstance(value, dict) and all(map(plain, value.values())))

    if not plain(state):
        raise TypeError(f"cannot checkpoint {name}: {state['bit_generator']} state is not plain ints (use PCG64)")
    return state


def _model_generators(model: BaseAlgorithm) -> dict[str, np.random.Generator]:
    """numpy Generators the model draws from, by attribute path: its own (HER) and its action space's."""
    generators = {name: value for name, value in vars(model).items() if isinstance(value, np.random.Generator)}
    generators["action_space.np_random"] = model.action_space.np_random
    return generators


def _rng_state(model: BaseAlgorithm) -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": th.get_rng_state(),
        "cuda": th.cuda.get_rng_state_all() if th.cuda.is_available() else [],
        "numpy": {
            "key": th.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": {"version": version, "state": th.tensor(internal, dtype=th.int64), "gauss_next": gauss_next},
        "generators": {name: _plain_generator_state(name, g) for name, g in _model_generators(model).items()},
    }


def _normalization_state(model: BaseAlgorithm) -> dict[str, Any] | None:
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is None:
        return None
    if vec_normalize.norm_obs:
        raise ValueError("checkpoints hold reward normalisation only; wrap the env with VecNormalize(norm_obs=False)")
    rms = vec_normalize.ret_rms
    return {
        "ret_rms": {
            "mean": th.as_tensor(rms.mean, dtype=th.float64),
            "var": th.as_tensor(rms.var, dtype=th.float64),
            "count": float(rms.count),
        }
    }


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Snapshot:
    """Everything of a checkpoint but the weights and optimizer states, taken at one moment: counters, episode
    statistics, RNG states, reward normalisation and the resume state. Taken at a rollout start, it still
    describes the model during that rollout (nothing updates the weights or optimizers then), so a stop
    mid-rollout writes the checkpoint of the rollout start (:func:`write_checkpoint`)."""

    meta: dict[str, Any]
    state: dict[str, Any]

    @property
    def num_timesteps(self) -> int:
        return int(self.meta["num_timesteps"])


def snapshot(
    model: BaseAlgorithm,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> Snapshot:
    """The :class:`Snapshot` of ``model`` now (arguments as :func:`save_checkpoint`)."""
    algo = config["algo"]
    if type(model) is not ALGORITHM_CLASSES[algo]:
        raise ValueError(
            f"config says {algo!r} ({ALGORITHM_CLASSES[algo].__name__}), the model is a {type(model).__name__}"
        )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algo": algo,
        "config": config,
        "observation_space": space_to_dict(model.observation_space),
        "action_space": space_to_dict(model.action_space),
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(model._n_updates),
        "episode_num": int(model._episode_num),
        "ep_info_buffer": [{k: float(v) for k, v in info.items()} for info in model.ep_info_buffer or ()],
        "ep_success_buffer": [bool(s) for s in model.ep_success_buffer or ()],
        "versions": {"torch": th.__version__, "stable_baselines3": stable_baselines3.__version__},
        "extra": extra or {},
    }
    state = {
        "variables": {
            name: operator.attrgetter(name)(model).detach().cpu().clone() for name in model._get_torch_save_params()[1]
        },
        "rng": _rng_state(model),
        "normalization": _normalization_state(model),
        "resume": resume,
    }
    return Snapshot(meta, state)


def save_checkpoint(
    model: BaseAlgorithm,
    path: str | Path,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s checkpoint to ``path`` atomically (temporary file, fsync, rename); returns ``path``.

    :param model: a model built by ``build_model(config, ...)``
    :param path: the checkpoint file (``checkpoint_path(run_dir, model.num_timesteps)`` in a run)
    :param config: the model's run config, saved whole so the checkpoint alone rebuilds the model
    :param extra: JSON-serialisable values stored under ``meta["extra"]``
    :param resume: what replays the envs' episodes in progress (see the module docstring), or None
    """
    return write_checkpoint(model, path, snapshot(model, config, extra, resume))


def write_checkpoint(model: BaseAlgorithm, path: str | Path, taken: Snapshot) -> Path:
    """Write the checkpoint of ``taken`` with ``model``'s weights and optimizer states as they are now (the
    same as when ``taken`` was, if no update ran since), atomically; returns ``path``."""
    state = {"params": model.get_parameters(), **taken.state}
    meta = taken.meta
    tensors = io.BytesIO()
    th.save(state, tensors)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w") as archive:
                archive.writestr(META_NAME, json.dumps(meta, indent=1))
                archive.writestr(STATE_NAME, tensors.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


# --- loading --------------------------------------------------------------------------------------------
def _read(path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo(member).file_size  # zipfile reads no more than this
            limit = MAX_MEMBER_BYTES[member]
            if size > limit:
                raise CheckpointError(
                    f"{path}: {member} unpacks to {size} bytes, over the {limit} a checkpoint may hold"
                )
            return archive.read(member)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such checkpoint") from exc
    except KeyError as exc:
        raise CheckpointError(f"{path}: not a carla-rl checkpoint (no {member})") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({exc})") from exc


def read_meta(path: str | Path, expected_algo: str | None = None) -> dict[str, Any]:
    """The checkpoint's ``meta.json``, checked (format, version, algorithm), with its run config validated.

    :raises CheckpointError: a missing, truncated or foreign file, a newer format, another algorithm than
        ``expected_algo``, or a saved config that no longer validates
    """
    path = Path(path)
    try:
        meta = json.loads(_read(path, META_NAME))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt {META_NAME} ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a carla-rl checkpoint ({META_NAME} has no format {FORMAT!r})")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('format_version')!r}, this carla-rl "
            f"reads up to {FORMAT_VERSION}"
        )
    if expected_algo is not None and meta.get("algo") != expected_algo:
        raise CheckpointError(f"{path}: a {meta.get('algo')!r} checkpoint, expected {expected_algo!r}")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: {META_NAME} has no run config")
    try:
        meta["config"] = load_run_config([], meta["config"], overrides_source=f"{path}: {META_NAME}")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its run config does not validate ({exc.key}: {exc.problem})") from exc
    if meta["config"]["algo"] != meta.get("algo"):
        raise CheckpointError(f"{path}: meta says {meta.get('algo')!r}, its config {meta['config']['algo']!r}")
    return meta


def _read_state(path: Path) -> dict[str, Any]:
    data = _read(path, STATE_NAME)
    try:
        with warnings.catch_warnings():  # torch warns of foreign pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            state = th.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error: ([^.]*)", str(exc))
        reason = " ".join(found.group(1).split()) if found else type(exc).__name__
        raise CheckpointError(
            f"{path}: {STATE_NAME} holds objects other than tensors and plain containers; "
            f"refusing to unpickle them ({reason})"
        ) from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt {STATE_NAME} ({exc})") from exc
    missing = {"params", "variables", "rng", "normalization"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise CheckpointError(f"{path}: {STATE_NAME} lacks {', '.join(sorted(missing))}")
    return state


class HasSpaces(Protocol):
    """An env, or anything that only describes one: what a policy to drive needs to be built."""

    observation_space: gym.Space
    action_space: gym.Space


class _SpacesOnlyEnv(gym.Env):
    """Stands in for an env of the given spaces when only they matter; it cannot be reset or stepped."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space, self.action_space = observation_space, action_space


def _spaces_only(env: HasSpaces) -> DummyVecEnv:
    return DummyVecEnv([lambda: _SpacesOnlyEnv(env.observation_space, env.action_space)])


def _check_spaces(path: Path, meta: dict[str, Any], env: HasSpaces) -> None:
    """The env's spaces, as the policy sees them (SB3's wrappers), must equal the saved ones."""
    view = BaseAlgorithm._wrap_env(_spaces_only(env), verbose=0, monitor_wrapper=False)
    for kind, actual in (("observation", view.observation_space), ("action", view.action_space)):
        try:
            saved = space_from_dict(meta[f"{kind}_space"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable {kind} space in {META_NAME} ({exc!r})") from exc
        if saved != actual:
            raise CheckpointError(f"{path}: the checkpoint's {kind} space {saved} does not match the env's {actual}")


def _rebuild(
    path: Path,
    spaces_of: HasSpaces,
    env: GymEnv,
    device: str | None,
    expected_algo: str | None,
    inference: bool = False,
) -> tuple[BaseAlgorithm, dict[str, Any], dict[str, Any]]:
    """Read the checkpoint, check its spaces against ``spaces_of``'s and build its model on ``env``;
    returns (model, meta, state). ``inference``: a model that only acts (see :func:`_inference_config`)."""
    meta = read_meta(path, expected_algo)
    _check_spaces(path, meta, spaces_of)
    state = _read_state(path)
    config = _inference_config(meta["config"], env) if inference else meta["config"]
    model = build_model(config, env, device=device)
    expected = set(model._get_torch_save_params()[0])
    if set(state["params"]) != expected:
        raise CheckpointError(f"{path}: saved state dicts {sorted(state['params'])}, the model has {sorted(expected)}")
    return model, meta, state


def _inference_config(config: dict[str, Any], env: GymEnv) -> dict[str, Any]:
    """The run config with a minibatch that fits the rollout buffer of ``env``'s envs: a model built only to
    act never fills that buffer, and SB3 warns when the training run's batch (e.g. 1024 over 16 envs) exceeds
    what one env's rollout holds. The networks do not depend on it."""
    kwargs = config.get("algo_kwargs", {})
    if "batch_size" not in kwargs or "n_steps" not in kwargs:
        return config
    rollout = int(kwargs["n_steps"]) * int(getattr(env, "num_envs", 1))
    if int(kwargs["batch_size"]) <= rollout:
        return config
    return {**config, "algo_kwargs": {**kwargs, "batch_size": rollout}}


def _load_error(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path}: the saved tensors do not fit the model of its config ({exc})")


def _restore_rng(model: BaseAlgorithm, rng: dict[str, Any]) -> None:
    th.set_rng_state(rng["torch"])
    if th.cuda.is_available() and len(rng["cuda"]) == th.cuda.device_count():
        th.cuda.set_rng_state_all(rng["cuda"])
    saved = rng["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        }
    )
    python = rng["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    for name, generator in _model_generators(model).items():
        if name in rng["generators"]:
            generator.bit_generator.state = rng["generators"][name]


def _restore_normalization(path: Path, model: BaseAlgorithm, saved: dict[str, Any] | None) -> None:
    vec_normalize = model.get_vec_normalize_env()
    if saved is None:
        return
    if vec_normalize is None:
        raise CheckpointError(
            f"{path}: saved with reward normalisation (train.normalize_reward) but the env is "
            "not wrapped in VecNormalize"
        )
    rms = vec_normalize.ret_rms
    rms.mean = saved["ret_rms"]["mean"].numpy()
    rms.var = saved["ret_rms"]["var"].numpy()
    rms.count = saved["ret_rms"]["count"]


def load_checkpoint(
    path: str | Path, env: GymEnv, device: str | None = None, expected_algo: str | None = None
) -> BaseAlgorithm:
    """The model of a checkpoint on ``env``, as :func:`load_training_checkpoint`, without the resume state."""
    return load_training_checkpoint(path, env, device, expected_algo)[0]


def load_training_checkpoint(
    path: str | Path, env: GymEnv, device: str | None = None, expected_algo: str | None = None
) -> tuple[BaseAlgorithm, dict[str, Any] | None]:
    """The model of a checkpoint on ``env``, with everything needed to continue training it.

    Restores the weights, every optimizer's state (K-FAC's included), the step counters, SB3's episode
    statistics, the reward normalisation statistics (``env`` must then be wrapped in VecNormalize) and the
    RNG states (global ones included: this is for resuming, not for loading beside a running training).
    ``env`` is seeded with the run's ``train.seed`` when the model is built (SB3 does so for every new
    model) and is reset by the next ``learn`` (the Trainer instead replays the saved episodes in progress).
    Continue with ``model.learn(total - model.num_timesteps, reset_num_timesteps=False)``.

    :param path: a checkpoint file
    :param env: the env to train on; its spaces must be the checkpoint's
    :param device: overrides the saved ``train.device``
    :param expected_algo: refuse checkpoints of another algorithm
    :returns: the model and the checkpoint's resume state (None when it has none; the Trainer restores it)
    :raises CheckpointError: see :func:`read_meta`; also an unsafe or corrupt ``state.pt``, other spaces
    """
    path = Path(path)
    model, meta, state = _rebuild(path, env, env, device, expected_algo)
    try:
        model.set_parameters(state["params"], exact_match=True, device=model.device)
        for name, tensor in state["variables"].items():
            operator.attrgetter(name)(model).data.copy_(tensor)
    except (RuntimeError, ValueError, KeyError, AttributeError) as exc:
        raise _load_error(path, exc) from exc
    model.num_timesteps = int(meta["num_timesteps"])
    model._n_updates = int(meta["n_updates"])
    model._episode_num = int(meta["episode_num"])
    model.ep_info_buffer = deque(meta["ep_info_buffer"], maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(meta["ep_success_buffer"], maxlen=model._stats_window_size)
    _restore_normalization(path, model, state["normalization"])
    _restore_rng(model, state["rng"])
    return model, state.get("resume")


def check_checkpoint(path: str | Path, expected_algo: str | None = None) -> dict[str, Any]:
    """Everything about a checkpoint that needs no env, checked before any process starts; returns its meta.

    ``meta.json`` (as :func:`read_meta`), its saved spaces, ``state.pt`` (tensors and plain containers only)
    and that the saved weights fit the model its config builds on those spaces. The command line calls
    this, so a hostile or damaged file is one line there instead of tracebacks from a node of a started stack.

    :raises CheckpointError: as :func:`load_policy`
    """
    path = Path(path)
    meta = read_meta(path, expected_algo)
    try:
        spaces = [space_from_dict(meta[f"{kind}_space"]) for kind in ("observation", "action")]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable space in {META_NAME} ({short(exc)})") from exc
    load_policy(path, _SpacesOnlyEnv(*spaces), device="cpu", expected_algo=expected_algo)
    return meta


def load_policy(
    path: str | Path, env: HasSpaces, device: str | None = None, expected_algo: str | None = None
) -> BaseAlgorithm:
    """The model of a checkpoint for driving ``env``: policy weights only, in evaluation mode.

    The model is built on a stand-in with ``env``'s spaces, so ``env`` is only read for its spaces (it may
    be any object that has them) and is neither seeded nor reset; step it yourself and call
    ``model.predict(obs, deterministic=True)``. Optimizer states, counters and the saved RNG states are not
    restored; building the model seeds the global RNGs with the run's ``train.seed``, as SB3 does for every
    new model.

    :raises CheckpointError: as :func:`load_checkpoint`
    """
    path = Path(path)
    model, _, state = _rebuild(path, env, _spaces_only(env), device, expected_algo, inference=True)
    try:
        model.policy.load_state_dict(state["params"]["policy"])
    except (RuntimeError, KeyError) as exc:
        raise _load_error(path, exc) from exc
    model.policy.set_training_mode(False)
    return model
