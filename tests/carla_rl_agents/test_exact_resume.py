"""Exact resume on the real in-process env (issue 24): train N steps straight, or stop (mid-episode, mid-rollout,
by a callback or by SIGINT), resume from the checkpoint and train to N: the weights are equal bit for bit, with
a DummyVecEnv, a SubprocVecEnv and the shared-memory vector env. Without the saved episodes in progress the
resumed run ends elsewhere (the test can fail)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

import carla_rl_agents.training as training
from carla_rl_agents.checkpoints import list_checkpoints, read_meta
from carla_rl_agents.settings import load_run_config
from carla_rl_agents.shm_vec_env import make_vec_env
from carla_rl_agents.training import Trainer, read_episodes
from carla_rl_common.paths import CONFIG_DIR

th.set_num_threads(1)
TOTAL = 640
STOP_AT = 400  # after the checkpoint at 384 (3 rollouts of 2 x 64 steps), mid-rollout and mid-episode


def run_config(num_workers: int = 0, num_envs: int = 2, total: int = TOTAL) -> dict:
    return load_run_config(
        [CONFIG_DIR / "base.yaml", CONFIG_DIR / "ppo.yaml"],
        {
            "algo_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
            "policy": {"net_arch": [32]},
            "train": {
                "total_timesteps": total,
                "num_envs": num_envs,
                "num_workers": num_workers,
                "envs_per_worker": num_envs // num_workers if num_workers else 1,
                "checkpoint_every": 1,
                "device": "cpu",
                "seed": 5,
            },
        },
    )


def factory(config: dict):
    """The envs of ``carla-rl train --inprocess``: in-process simulators, through make_vec_env."""
    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    sim, seed = config["sim"], config["train"]["seed"]
    makers = [
        lambda i=i: InProcessEnv(
            config,
            load_simulator(sim["town"], "", sim["fixed_delta_seconds"], sim["traffic"], seed + sim["seed"] + i),
            seed=seed + i,
        )
        for i in range(config["train"]["num_envs"])
    ]
    return make_vec_env(makers, config["train"])


class StopAt(BaseCallback):
    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.num_timesteps < self.steps


def train(config: dict, run_dir: Path, stop_at: int | None = None) -> Trainer:
    trainer = Trainer(config, factory, run_dir, progress=False, say=lambda line: None)
    with trainer:
        trainer.train([StopAt(stop_at)] if stop_at else [])
    return trainer


def resume(run_dir: Path) -> Trainer:
    trainer = Trainer.resume(run_dir, factory, progress=False, say=lambda line: None)
    with trainer:
        trainer.train()
    return trainer


def max_difference(a: Trainer, b: Trainer) -> float:
    sa, sb = a.model.policy.state_dict(), b.model.policy.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    sa, sb = a.model.policy.state_dict(), b.model.policy.state_dict()
    assert all(th.equal(sa[k], sb[k]) for k in sa), f"max difference {max_difference(a, b)}"
    assert (a.model.num_timesteps, a.model._n_updates) == (b.model.num_timesteps, b.model._n_updates)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Trainer:
    return train(run_config(), tmp_path_factory.mktemp("straight"))


def test_the_checkpoint_falls_mid_episode(straight, tmp_path):
    """What makes the test below a test: an episode is in progress in every env at the checkpoint."""
    stopped = train(run_config(), tmp_path, stop_at=STOP_AT)
    assert stopped.model.num_timesteps == STOP_AT
    last = list_checkpoints(tmp_path)[-1]
    assert read_meta(last)["num_timesteps"] == 384
    episodes = read_episodes(straight.episodes_path)
    for env in (0, 1):
        ends = [e["timesteps"] for e in episodes if e["env"] == env]
        assert not any(e == 384 for e in ends), "an episode ended at the checkpoint"


@pytest.mark.parametrize("num_workers", [0, 2], ids=["subproc", "shm"])
def test_stopped_and_resumed_equals_straight_bit_for_bit(straight, tmp_path, num_workers):
    config = run_config(num_workers)
    reference = straight if num_workers == 0 else train(config, tmp_path / "straight")
    if num_workers:
        assert_same_weights(reference, straight)  # the shm vec env trains as SubprocVecEnv does
    train(config, tmp_path / "run", stop_at=STOP_AT)
    resumed = resume(tmp_path / "run")
    assert resumed.exact_resume
    assert_same_weights(reference, resumed)
    assert read_episodes(resumed.episodes_path) == read_episodes(reference.episodes_path)


def test_one_env_in_a_dummy_vec_env_resumes_exactly(tmp_path):
    config = run_config(num_envs=1, total=384)
    reference = train(config, tmp_path / "straight")
    train(config, tmp_path / "run", stop_at=200)
    assert_same_weights(reference, resume(tmp_path / "run"))


def test_without_the_episodes_in_progress_the_resumed_run_diverges(straight, tmp_path, monkeypatch):
    """Before: resume reseeded the envs (``train.seed + num_timesteps``) and dropped the episodes in progress."""
    train(run_config(), tmp_path, stop_at=STOP_AT)
    monkeypatch.setattr(training, "vec_env_state", lambda venv: None)
    resumed = resume(tmp_path)
    assert not resumed.exact_resume
    assert max_difference(straight, resumed) > 1e-4


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_exact_resume import factory, run_config
    from carla_rl_agents.training import Trainer, TrainingStopped
    from pathlib import Path
    try:
        with Trainer(run_config(total=100_000), factory, Path({run_dir!r}), progress=False) as trainer:
            trainer.train()
    except TrainingStopped:
        sys.exit(130)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_mid_rollout_saves_the_rollouts_start_and_resumes_exactly(tmp_path, signum):
    """Ctrl-C / SIGTERM: one line naming the checkpoint, one naming the curve, no traceback; resumed to a step
    count past it, the run equals the straight one."""
    run_dir = tmp_path / "run"
    script = SCRIPT.format(tests=str(Path(__file__).parent), run_dir=str(run_dir))
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list_checkpoints(run_dir)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # mid-rollout of the next rollout
    if signum == signal.SIGINT:  # Ctrl-C on a terminal: the whole process group, the env workers too
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert "Traceback" not in out and "Warning" not in out, out
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 2, out
    step = read_meta(list_checkpoints(run_dir)[-1])["num_timesteps"]
    assert lines[0] == f"checkpoint at step {step}: {list_checkpoints(run_dir)[-1]}"
    assert lines[1] == f"learning curve: {run_dir / 'learning_curve.png'}"
    assert (run_dir / "learning_curve.png").is_file()
    # the run's config says 100,000 steps (learning-rate schedules depend on it): both runs stop at `total`
    total = step + 256
    reference = train(run_config(total=100_000), tmp_path / "straight", stop_at=total)
    resumed = Trainer.resume(run_dir, factory, progress=False, say=lambda line: None)
    with resumed:
        resumed.train([StopAt(total)])
    assert resumed.model.num_timesteps == total
    assert_same_weights(reference, resumed)
