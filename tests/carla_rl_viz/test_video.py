"""Episode videos: real MP4 files read back with OpenCV, in-process and over real DDS."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from carla_rl_agents.evaluation import evaluate
from carla_rl_env.settings import load_env_config
from carla_rl_viz.video import EpisodeVideos, EvaluationVideos, Mp4Writer, RosEpisodeRecording, read_frames, with_video
from carla_rl_viz.views import PANEL

STEPS = 12
SHORT = {
    "env": {
        "episode": {
            "max_episode_steps": STEPS,
            "terminate_on_collision": False,
            "terminate_on_off_road": False,
            "max_route_deviation": 1.0e4,
            "wrong_way_angle_deg": 180.0,  # never: a heading error is at most 180 degrees
            "stuck_seconds": 8.64e4,
            "min_average_speed": 0.01,
        }
    }
}


class Constant:
    """A policy that always drives straight on, gently."""

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        n = len(next(iter(observation.values())))
        return np.tile(np.array([0.0, 0.4], np.float32), (n, 1)), state


def frames_of(path) -> list[np.ndarray]:
    import cv2

    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


def test_mp4_writer_frames_read_back(tmp_path):
    writer = Mp4Writer(tmp_path / "a.mp4", fps=20)
    for i in range(25):
        writer.write(np.full((120, 160, 3), i * 10, np.uint8))
    writer.close()
    assert read_frames(tmp_path / "a.mp4") == (25, (160, 120))
    frames = frames_of(tmp_path / "a.mp4")
    assert abs(int(frames[-1].mean()) - 240) <= 3 and abs(int(frames[0].mean())) <= 3  # content, not just a count
    with open(tmp_path / "a.mp4", "rb") as f:
        assert f.read(12)[4:8] == b"ftyp"  # an ISO/MP4 container


def test_episode_videos_one_file_per_episode(tmp_path):
    videos = EpisodeVideos(tmp_path)
    frame = np.zeros((64, 64, 3), np.uint8)
    for _ in range(3):
        videos.frame("env_0", 1, frame)
    videos.frame("env_0", 2, frame)  # a new episode without an end seen closes the old file
    videos.end("env_1")  # nothing open: nothing written
    written = videos.close()
    assert [p.name for p in written] == ["env_0_episode_001.mp4", "env_0_episode_002.mp4"]
    assert [read_frames(p)[0] for p in written] == [3, 1]


def test_inprocess_evaluation_writes_one_video_per_episode(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from carla_rl_env.inprocess import InProcessEnv
    from carla_rl_sim.core import load_simulator

    config = load_env_config([], SHORT)
    videos = EvaluationVideos(tmp_path, config["env"], 1)
    env = DummyVecEnv([lambda: with_video(videos, InProcessEnv(config, load_simulator("RLTown01", "", 0.05, 2, 0)), 0)])
    result = evaluate(Constant(), env, 2)
    written = videos.close()
    assert [p.name for p in written] == ["env_0_episode_001.mp4", "env_0_episode_002.mp4"]
    for path, record in zip(written, result["records"]):
        count, (w, h) = read_frames(path)
        assert count == record["length"] + 1  # the reset frame, then one per step
        assert h > PANEL and w > 2 * PANEL - 2
        last = frames_of(path)[-1]
        camera, bev = last[:PANEL, : w - PANEL], last[:PANEL, w - PANEL :]
        assert camera[: PANEL // 4].mean() > 100  # the camera's sky, not an empty panel
        assert bev.max(axis=2)[PANEL - PANEL // 3, PANEL // 2] > 200  # the ego, white, where the BEV puts it
        assert last[PANEL:].max() > 200  # overlay text


@pytest.mark.slow
def test_ros_recording_over_dds(tmp_path):
    """Simulator and env node as processes; the recording subscribes like `carla-rl evaluate --video`."""
    import yaml

    from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
    from carla_rl_env.gym_env import RosEnv

    config_file = tmp_path / "short.yaml"
    config_file.write_text(yaml.safe_dump(SHORT))
    videos = EvaluationVideos(tmp_path / "out", load_env_config([], SHORT)["env"], 1)
    assert videos.camera_id == "rgb_front"
    steps = []
    with ProcessGroup(dict(os.environ), log=open(tmp_path / "nodes.log", "w")) as group:
        group.start(
            NodeSpec(
                "sim",
                "carla_rl_sim.node",
                "",
                {"traffic": 2, "synchronous_mode_wait_for_vehicle_control_command": True},
            )
        )
        group.start(NodeSpec("env", "carla_rl_env.node", "", {"config": [str(config_file)], "use_sim_time": True}))
        with RosEpisodeRecording(videos.out_dir, [""], videos.camera_id) as recording:
            # a short episode under load can end before DDS matched the recording's subscriptions
            deadline = time.monotonic() + 30
            while recording._node.count_publishers("/carla_rl/step") == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            env = RosEnv("", timeout=60)
            env.reset(seed=1)
            done = False
            while not done:
                _, _, terminated, truncated, info = env.step(np.array([0.0, 0.4], np.float32))
                steps.append(info)
                done = terminated or truncated
            env.close()
    # (a frame the simulator ticked without the agent's command is folded into the next step: <= STEPS)
    assert 0 < len(steps) <= STEPS, (tmp_path / "nodes.log").read_text()[-2000:]
    assert [p.name for p in recording.written] == ["env_0_episode_001.mp4"]
    count, (w, _) = read_frames(recording.written[0])
    assert count == len(steps)  # over ROS one frame per Step message (the reset's observation is no Step)
    last = frames_of(recording.written[0])[-1]
    assert last[: PANEL // 4, : w - PANEL].mean() > 100, "no camera image in the video"
    assert last[:PANEL, w - PANEL :].max(axis=2)[PANEL - PANEL // 3, PANEL // 2] > 200, "no ego in the BEV"
    assert steps[-1]["speed"] > 0.1  # the car drove: the frames are of a moving scene
