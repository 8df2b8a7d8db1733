"""Offline evaluation: score a recorded drive with the current env config, with no simulator running.

The raw bridge topics of a bag (recorded from our embedded simulator or from a real CARLA + bridge) are
turned back into what the env node computed live: ``world_info`` gives the road network, frames are
assembled by stamp with the env node's own assembler and frame builder (:mod:`carla_rl_env.frames`), and a
:class:`~carla_rl_env.task.DrivingTask` built from the given config yields observations, reward terms and
episode ends. Recording the same drive and evaluating it with the same config reproduces the live returns.

:func:`evaluate_bag` runs it per env namespace of the bag, in its parts:

1. :mod:`.recording`: the env's topics in the bag and a first pass that indexes what the recording holds;
2. :mod:`.episodes`: which frames make each episode and which route it follows;
3. :mod:`.runner`: a second pass that rebuilds the episodes through the task (and runs a policy on them);
4. :mod:`.report`: the per-episode results, ``report.md`` and the plots.

With a policy (a checkpoint, loaded by the caller's ``load_policy(path, spaces)``, e.g.
``carla_rl_agents.checkpoints.load_policy`` from ``carla-rl evaluate-bag``; or any object with
``predict(obs, deterministic=True) -> (action, state)``), its action on every rebuilt observation is compared
with the recorded one: the control applied in the next frame, mapped into the action space with
``ActionMapper.from_control``. An episode that cannot be rebuilt compares it on the recorded steps'
observations instead.

Outputs in ``out_dir`` (created only once the evaluation has run, so a failure leaves no empty report):
``report.md``, ``report.json`` (with the per-step rewards), ``returns.png``, ``reward_curves.png`` and, with a
policy, ``action_errors.png``. The report's ``summary`` is what a command line prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from carla_rl_msgs.msg import Step
from rclpy.serialization import deserialize_message

from carla_rl_bags import BagError
from carla_rl_bags.episodes import EpisodePlan, plan_episodes
from carla_rl_bags.progress import progress_bar
from carla_rl_bags.reader import Bag, open_bag
from carla_rl_bags.recording import EnvTopics, bridge_events, find_namespaces, index_recording
from carla_rl_bags.report import episode_result, markdown_report, plots, summarize
from carla_rl_bags.runner import ActionLog, EpisodeRunner, OfflineSpaces, Policy
from carla_rl_common import bridge, codec
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_env.actions import ActionMapper
from carla_rl_env.settings import load_env_config
from carla_rl_env.task import DrivingTask

PolicyLoader = Callable[[Path, OfflineSpaces], Policy]


def evaluate_bag(
    bag: Path | str,
    config_paths: list[str],
    checkpoint: Path | None,
    out_dir: Path | str,
    *,
    policy: Policy | None = None,
    load_policy: PolicyLoader | None = None,
    saved_config: tuple[str, dict[str, Any]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Rebuild every recorded episode with the config of ``config_paths`` and report it (see module doc).

    A ``checkpoint`` is loaded with ``load_policy(checkpoint, spaces)`` (the bag tools know no RL library; the
    caller brings the loader). ``saved_config``: ``(name, config)`` of a saved run config (a checkpoint's: the
    env it was trained on), read before ``config_paths``; ``name`` stands for it in the report and in errors.
    ``progress``: bars of the passes over the bag on a terminal. Returns the report (also written to
    ``out_dir/report.json`` beside ``report.md`` and the plots). Raises BagError when the bag is unreadable or
    holds neither bridge topics nor step messages to evaluate.
    """
    sources = [str(p) for p in config_paths]
    if saved_config is not None:
        name, saved = saved_config
        config = load_env_config(config_paths, {k: saved[k] for k in ("env", "sim") if k in saved})
        sources.insert(0, name)
    else:
        config = load_env_config(config_paths)
    cfg, source = config["env"], ", ".join(sources) or "<defaults>"
    with open_bag(bag, progress=progress) as opened:
        namespaces = find_namespaces(opened, cfg["role_name"])
        if not namespaces:
            raise BagError(
                f"{opened.path}: no topics of ego role {cfg['role_name']!r} and no carla_rl steps to "
                f"evaluate (topics: {', '.join(sorted(opened.topics)) or 'none'})"
            )
        mapper = ActionMapper(cfg["action"], source)
        task_spaces = DrivingTask(cfg, None, bridge.DEFAULT_FIXED_DELTA_SECONDS, source=source)
        if policy is None and checkpoint is not None:
            if load_policy is None:
                raise BagError(f"cannot score {checkpoint}: evaluate_bag was given no load_policy for checkpoints")
            policy = load_policy(Path(checkpoint), OfflineSpaces(task_spaces.observation_space, mapper.space))
        actions = ActionLog(mapper) if policy is not None else None
        report: dict[str, Any] = {
            "bag": str(opened.path),
            "config": sources,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "problems": list(opened.problems),
            "notes": [],
            "episodes": [],
        }
        for ns in namespaces:
            report["episodes"] += _evaluate_namespace(
                opened, ns, cfg, source, policy, actions, report["notes"], progress
            )
    report["policy"] = actions.summary() if actions is not None else None
    report["summary"] = summarize(report)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = plots(report, actions, out)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    return report


def _evaluate_namespace(
    bag: Bag,
    ns: str,
    cfg: dict[str, Any],
    source: str,
    policy: Policy | None,
    actions: ActionLog | None,
    notes: list[str],
    progress: bool = False,
) -> list[dict[str, Any]]:
    topics = EnvTopics.of(bag, ns, cfg)
    where = f"/{ns}" if ns else "the root namespace"
    missing = topics.missing_for_frames()
    if missing:
        notes.append(f"{where}: no {', '.join(missing)} recorded: observations and rewards cannot be rebuilt")
    with progress_bar(f"indexing {where}", unit="frame", enabled=progress) as bar:
        index = index_recording(bag, topics, bar.update)
    network = None
    if index.world is not None and not missing:
        try:
            network = RoadNetwork.from_string(
                index.world.opendrive, source=f"{bag.path}: world_info ({index.world.map_name})"
            )
        except ValueError as exc:
            notes.append(f"{where}: the recorded map does not load: {exc}")
    plans = plan_episodes(index, network)
    if not plans:
        notes.append(f"{where}: nothing to evaluate (no carla_rl steps, waypoints or goals recorded)")
        return []
    runner = None
    if network is not None and any(p.reset_stamp is not None for p in plans):
        runner = EpisodeRunner(cfg, network, index.dt, plans, policy, actions, source)
        with progress_bar(f"evaluating {where}", len(index.frames), "frame", enabled=progress) as bar:
            for kind, recv, payload in bridge_events(bag, topics, index.prefeed):
                if kind == "frame":
                    runner.frame(recv, payload)
                    bar.update()
    if policy is not None and actions is not None:
        _compare_on_recorded_steps(bag, topics, [p for p in plans if p.reset_stamp is None], policy, actions)
    results = [episode_result(p, runner, ns) for p in plans]
    for plan, result in zip(plans, results):
        result["policy"] = actions.summary(plan) if actions is not None else None
    return results


def _compare_on_recorded_steps(
    bag: Bag, topics: EnvTopics, plans: list[EpisodePlan], policy: Policy, actions: ActionLog
) -> None:
    """Without rebuilt observations: the policy on each recorded step's observation vs the next step's control."""
    wanted = {(p.env_id, p.episode): p for p in plans}
    pending: dict[tuple[str, int], tuple[Any, float]] = {}
    for message in bag.messages([n for n, k in topics.kinds.items() if k == "step"]) if wanted else ():
        msg = deserialize_message(message.data, Step)
        key = (msg.env_id, int(msg.episode))
        if key not in wanted:
            continue
        if key in pending:
            actions.add(wanted[key], *pending.pop(key), bridge.msg_to_control(msg.control))
        if not (msg.terminated or msg.truncated):
            action, _ = policy.predict({k: v[None] for k, v in codec.step_observation(msg).items()}, deterministic=True)
            pending[key] = (np.asarray(action)[0], float(msg.speed))
