"""Episode videos: real H.264 MP4 files read back with PyAV (FFmpeg's decoder), in-process and over real DDS."""

from __future__ import annotations

import os
import time

import av
import numpy as np
import pytest

from carla_rl_agents.evaluation import evaluate, write_results
from carla_rl_env.settings import load_env_config
from carla_rl_viz.video import (
    MPEG4,
    EpisodeVideos,
    EvaluationVideos,
    Mp4Writer,
    RosEpisodeRecording,
    read_frames,
    with_video,
)
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
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def codec_of(path) -> tuple[str, str, str]:
    """(codec, pixel format, container format) as FFmpeg reads the file."""
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.name, context.pix_fmt, container.format.name


def top_level_boxes(path) -> list[bytes]:
    """The MP4's top-level box types in file order (ftyp, moov, mdat, ...)."""
    data, boxes, at = open(path, "rb").read(), [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        boxes.append(data[at + 4 : at + 8])
        at += size if size >= 8 else len(data)
    return boxes


def test_mp4_writer_writes_h264_browsers_play(tmp_path):
    writer = Mp4Writer(tmp_path / "a.mp4", fps=20)
    for i in range(25):
        writer.write(np.full((120, 160, 3), i * 10, np.uint8))
    writer.close()
    assert read_frames(tmp_path / "a.mp4") == (25, (160, 120))
    assert codec_of(tmp_path / "a.mp4") == ("h264", "yuv420p", "mov,mp4,m4a,3gp,3g2,mj2")
    boxes = top_level_boxes(tmp_path / "a.mp4")
    assert boxes[0] == b"ftyp" and boxes.index(b"moov") < boxes.index(b"mdat")  # faststart: index first
    frames = frames_of(tmp_path / "a.mp4")
    assert abs(int(frames[-1].mean()) - 240) <= 3 and abs(int(frames[0].mean())) <= 3  # content, not just a count


def test_odd_sizes_are_padded_to_what_yuv420p_needs(tmp_path):
    writer = Mp4Writer(tmp_path / "odd.mp4")
    for _ in range(3):
        writer.write(np.full((61, 83, 3), 200, np.uint8))
    writer.close()
    assert read_frames(tmp_path / "odd.mp4") == (3, (84, 62))
    last = frames_of(tmp_path / "odd.mp4")[-1]
    assert abs(int(last[:61, :83].mean()) - 200) <= 3


def test_mpeg4_part_2_is_the_fallback_encoder(tmp_path):
    writer = Mp4Writer(tmp_path / "b.mp4", codec=MPEG4)
    for _ in range(5):
        writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.close()
    assert read_frames(tmp_path / "b.mp4") == (5, (64, 64))
    assert codec_of(tmp_path / "b.mp4")[0] == "mpeg4"


def test_without_libx264_videos_fall_back_to_mpeg4_saying_so_once(monkeypatch, capsys):
    from carla_rl_viz import video

    monkeypatch.setattr(video, "_codec", None)  # chosen afresh, as in a new process
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libx264"})  # a PyAV built without it
    assert video.video_codec() == MPEG4 and video.video_codec() == MPEG4
    assert capsys.readouterr().err.count("no libx264") == 1


def test_episode_videos_one_file_per_episode(tmp_path):
    videos = EpisodeVideos(tmp_path)
    frame = np.zeros((64, 64, 3), np.uint8)
    for _ in range(3):
        videos.frame("env_0", 1, frame)
    videos.frame("env_0", 2, frame)  # a new episode without an end seen closes the old file
    videos.end("env_1")  # nothing open: nothing written
    written = videos.close()
    assert [p.name for p in written] == ["env_0_episode_0.mp4", "env_0_episode_1.mp4"]  # from 0, as results.md
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
    _, md = write_results(result["summary"], result["records"], tmp_path / "results")
    cells = [line.split("|")[1:3] for line in md.read_text().split("## Episodes")[1].splitlines() if line[:1] == "|"]
    rows = [(k.strip(), env.strip()) for k, env in cells if k.strip().isdigit()]  # (#, env) of each episode row
    assert [p.name for p in written] == [f"env_{env}_episode_{k}.mp4" for k, env in rows]
    assert [p.name for p in written] == ["env_0_episode_0.mp4", "env_0_episode_1.mp4"]
    for path, record in zip(written, result["records"]):
        assert codec_of(path)[:2] == ("h264", "yuv420p")
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
    assert [p.name for p in recording.written] == ["env_0_episode_0.mp4"]
    count, (w, _) = read_frames(recording.written[0])
    assert count == len(steps)  # over ROS one frame per Step message (the reset's observation is no Step)
    last = frames_of(recording.written[0])[-1]
    assert last[: PANEL // 4, : w - PANEL].mean() > 100, "no camera image in the video"
    assert last[:PANEL, w - PANEL :].max(axis=2)[PANEL - PANEL // 3, PANEL // 2] > 200, "no ego in the BEV"
    assert steps[-1]["speed"] > 0.1  # the car drove: the frames are of a moving scene
