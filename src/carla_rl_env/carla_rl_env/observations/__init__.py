"""The driving task's observation, one part per module (in the manner of HighwayEnv's observation types).

Each part is a small :class:`~carla_rl_env.observations.base.ObservationPart`: its key in the observation
dict, the gymnasium space of one frame and ``observe(frame, context)``. :class:`ObservationBuilder` stacks
the parts' frames and is what :class:`~carla_rl_env.task.DrivingTask` composes:

- :mod:`.images`: camera images, cropped, grayscaled and resized (``env.observation.cameras``);
- :mod:`.bev`: the CARLA-Roach style bird's-eye view rendered from the map, route and vehicles;
- :mod:`.measurements`: the measurement vector and its :class:`~.measurements.MeasurementLayout` (named
  entries and blocks, which the agents read instead of re-deriving offsets);
- :mod:`.nearby`: the nearest other vehicles in the ego frame, the measurement vector's last block;
- :mod:`.goal`: the goal in the ego frame.
"""
