"""carla_rl_env: the env node, its RL task and the gymnasium adapters.

Importing it registers two gymnasium ids: ``carla_rl/Driving-v0`` (in-process simulator; kwargs ``town``,
``config``, ``suite``, ``seed``, ``traffic``: :func:`carla_rl_bringup.gym_envs.make_driving`) and
``carla_rl/RosDriving-v0`` (:class:`carla_rl_env.gym_env.RosEnv` against a running stack; kwargs
``namespace``, ``timeout``). Entry points are strings, so nothing is imported until ``gymnasium.make``.
"""

from gymnasium.envs.registration import register, registry

for _id, _entry_point in (
    ("carla_rl/Driving-v0", "carla_rl_bringup.gym_envs:make_driving"),
    ("carla_rl/RosDriving-v0", "carla_rl_env.gym_env:RosEnv"),
):
    if _id not in registry:
        register(id=_id, entry_point=_entry_point)
