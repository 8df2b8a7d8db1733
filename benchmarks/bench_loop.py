"""See carla_rl_bringup.bench_loop (also run by `carla-rl bench`)."""

import sys

from carla_rl_bringup.bench_loop import main

sys.exit(main())
