"""See carla_rl_bringup.bench_sim (also run by `carla-rl bench`)."""

import sys

from carla_rl_bringup.bench_sim import main

sys.exit(main())
