"""The offline evaluation's report: one result per episode, ``report.md`` and the plots.

An episode is reported as ``rebuilt`` (its observations, rewards and totals recomputed by
:class:`carla_rl_bags.runner.EpisodeRunner`, beside what was recorded live) or ``recorded steps only`` (the
recorded steps and summary, when the frames, the map or the route are missing). Plots: ``returns.png``,
``reward_curves.png`` and, with a policy, ``action_errors.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from carla_rl_bags.episodes import EpisodePlan
from carla_rl_bags.runner import ActionLog, EpisodeRunner


def episode_result(plan: EpisodePlan, runner: EpisodeRunner | None, ns: str) -> dict[str, Any]:
    """The report's entry of one planned episode of namespace ``ns``: rebuilt by ``runner``, or from its steps."""
    recorded = None
    if plan.steps or plan.summary is not None:
        s = plan.summary
        recorded = {
            "length": int(s.length) if s is not None else len(plan.steps),
            "return": float(s.episode_return) if s is not None else sum(x.reward for x in plan.steps),
            "termination_reason": s.termination_reason if s is not None else plan.steps[-1].reason,
        }
    base = {
        "namespace": ns,
        "env_id": plan.env_id,
        "episode": plan.episode,
        "route_source": plan.route_source,
        "notes": plan.notes,
        "recorded": recorded,
    }
    rebuilt = runner.results.get(id(plan)) if runner is not None else None
    if rebuilt is None:
        return {**base, "mode": "recorded steps only", **_recorded_only(plan)}
    stats = rebuilt["stats"]
    if not rebuilt["ended"] and plan.last_stamp is None:
        plan.notes.append("the recording ends before the episode does")
    out = {
        **base,
        "mode": "rebuilt",
        "length": stats.length,
        "return": stats.episode_return,
        "reward_terms": dict(stats.term_sums),
        "collisions": stats.collisions,
        "lane_invasions": stats.lane_invasions,
        "route_completion": stats.route_completion,
        "mean_speed": stats.mean_speed,
        "distance": stats.distance,
        "success": stats.success,
        "termination_reason": stats.reason if rebuilt["ended"] else "",
        "rewards": rebuilt["rewards"],
    }
    if recorded is not None:
        out["return_difference"] = out["return"] - recorded["return"]
    return out


def _recorded_only(plan: EpisodePlan) -> dict[str, Any]:
    steps, s = plan.steps, plan.summary
    terms: dict[str, float] = {}
    for step in steps:
        for name, value in step.terms.items():
            terms[name] = terms.get(name, 0.0) + value
    return {
        "length": int(s.length) if s is not None else len(steps),
        "return": float(sum(x.reward for x in steps)),
        "reward_terms": terms,
        "collisions": int(s.collisions) if s is not None else None,
        "lane_invasions": int(s.lane_invasions) if s is not None else None,
        "route_completion": float(s.route_completion) if s is not None else None,
        "mean_speed": float(np.mean([x.speed for x in steps])) if steps else 0.0,
        "distance": float(s.distance) if s is not None else None,
        "success": bool(s.success) if s else None,
        "termination_reason": steps[-1].reason if steps else "",
        "rewards": [x.reward for x in steps],
    }


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The report in a few numbers (what ``carla-rl evaluate-bag`` prints; the per-step detail stays in the
    report): episodes and how many were rebuilt, their mean return and success rate, the largest difference
    of a rebuilt return from the recorded one, and with a policy its agreement with the recorded actions."""
    episodes = report["episodes"]
    rebuilt = [e for e in episodes if e["mode"] == "rebuilt"]
    differences = [abs(e["return_difference"]) for e in rebuilt if "return_difference" in e]
    successes = [e["success"] for e in episodes if e["success"] is not None]
    policy = report.get("policy")
    return {
        "bag": report["bag"],
        "episodes": len(episodes),
        "rebuilt": len(rebuilt),
        "mean_return": float(np.mean([e["return"] for e in episodes])) if episodes else None,
        "success_rate": float(np.mean(successes)) if successes else None,
        "max_return_difference": max(differences) if differences else None,
        "policy_agreement": policy["agreement_rate"] if policy else None,
        "policy_samples": policy["samples"] if policy else None,
        "problems": len(report["problems"]),
    }


def episode_line(e: dict[str, Any]) -> str:
    """One episode in a line: ``env_0 #1: rebuilt, 412 steps, return 35.2 (recorded 35.2), goal_reached``."""
    recorded = f" (recorded {e['recorded']['return']:.4g})" if e["recorded"] else ""
    return (
        f"{_label(e)}: {e['mode']}, {e['length']} steps, return {e['return']:.4g}{recorded}, "
        f"{e['termination_reason'] or 'running at the end of the recording'}"
    )


def _label(e: dict[str, Any]) -> str:
    return f"{e['env_id'] or e['namespace'] or 'env'} #{e['episode']}"


def plots(report: dict[str, Any], actions: ActionLog | None, out: Path) -> list[str]:
    """returns.png, reward_curves.png and (with a policy) action_errors.png; returns their file names.

    Figures are drawn without pyplot (no global state, no display): PNGs render with matplotlib's Agg.
    """
    episodes, written = report["episodes"], []
    if episodes:
        fig = Figure(figsize=(max(4.0, 0.6 * len(episodes) + 2), 3.5))
        ax = fig.subplots()
        x = np.arange(len(episodes))
        ax.bar(x, [e["return"] for e in episodes], color="tab:blue", label="evaluated")
        recorded = [(i, e["recorded"]["return"]) for i, e in enumerate(episodes) if e["recorded"]]
        if recorded:
            ax.scatter(*zip(*recorded), color="black", marker="x", zorder=3, label="recorded live")
        ax.set_xticks(x, [_label(e) for e in episodes], rotation=45, ha="right")
        ax.set_ylabel("episode return")
        ax.legend()
        written.append(_save(fig, out / "returns.png"))
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        for e in episodes:
            ax.plot(np.cumsum(e["rewards"]), label=_label(e))
        ax.set_xlabel("step")
        ax.set_ylabel("cumulative reward")
        if len(episodes) <= 12:
            ax.legend(fontsize="small")
        written.append(_save(fig, out / "reward_curves.png"))
    if actions is not None and actions.agree:
        fig = Figure(figsize=(10, 3))
        axes = fig.subplots(1, 3)
        for ax, (name, errors) in zip(axes, actions.errors().items()):
            ax.hist(errors, bins=41, range=(-1.0, 1.0), color="tab:orange")
            ax.set_title(f"{name}: policy - recorded")
        written.append(_save(fig, out / "action_errors.png"))
    return written


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: notes, the episode table, reward terms, the policy comparison, the plots."""
    lines = [
        f"# Offline evaluation of `{report['bag']}`",
        "",
        f"Config: {', '.join(f'`{c}`' for c in report['config']) or 'defaults'}"
        + (f"; checkpoint `{report['checkpoint']}`" if report["checkpoint"] else ""),
        "",
    ]
    for title, items in (("Problems with the bag", report["problems"]), ("Notes", report["notes"])):
        if items:
            lines += [f"## {title}", "", *(f"- {item}" for item in items), ""]
    episodes = report["episodes"]
    lines += [
        "## Episodes",
        "",
        "| episode | mode | route | steps | return | recorded return | difference | "
        "collisions | lane invasions | route completion | mean speed (m/s) | end |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for e in episodes:
        rec = e["recorded"] or {}
        lines.append(
            f"| {_label(e)} | {e['mode']} | {e['route_source']} | {e['length']} | {_number(e['return'], 4)} "
            f"| {_number(rec.get('return'), 4)} | {_number(e.get('return_difference'), 6)} "
            f"| {_number(e['collisions'])} | {_number(e['lane_invasions'])} "
            f"| {_number(e['route_completion'])} | {_number(e['mean_speed'], 2)} "
            f"| {e['termination_reason'] or '(running)'} |"
        )
    notes = [f"- {_label(e)}: {n}" for e in episodes for n in e["notes"]]
    if notes:
        lines += ["", *notes]
    terms = sorted({t for e in episodes for t in e["reward_terms"]})
    if terms:
        lines += [
            "",
            "## Reward terms (sums per episode)",
            "",
            "| episode | " + " | ".join(terms) + " |",
            "| --- |" + " ---: |" * len(terms),
        ]
        lines += [
            f"| {_label(e)} | " + " | ".join(_number(e["reward_terms"].get(t), 4) for t in terms) + " |"
            for e in episodes
        ]
    policy = report["policy"]
    if policy is not None:
        tolerance = (
            f"all components within {policy['agreement_tolerance']}"
            if policy["agreement_tolerance"]
            else "same discrete action"
        )
        lines += [
            "",
            "## Policy vs recorded actions",
            "",
            f"{policy['samples']} observations; agreement ({tolerance}): {policy['agreement_rate']:.1%}",
            "",
            "| | steer | throttle | brake |",
            "| --- | ---: | ---: | ---: |",
            f"| mean absolute error | {policy['steer_mae']:.4f} | {policy['throttle_mae']:.4f} "
            f"| {policy['brake_mae']:.4f} |",
            "",
            "| episode | observations | agreement | steer MAE | throttle MAE | brake MAE |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {_label(e)} | {p['samples']} | {p['agreement_rate']:.1%} | {p['steer_mae']:.4f} "
            f"| {p['throttle_mae']:.4f} | {p['brake_mae']:.4f} |"
            for e in episodes
            if (p := e["policy"])
        ]
    if report["plots"]:
        lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in report["plots"])]
    return "\n".join(lines) + "\n"
