"""``her_sac`` (SB3's SAC with its HerReplayBuffer) is gone: that buffer needs a goal-conditioned env, ours
follows a route. An old config naming it fails with one line that says so and names the replacement."""

from __future__ import annotations

import pytest

from carla_rl_agents.models import ALGORITHM_CLASSES, check_algo_kwargs
from carla_rl_agents.settings import ALGOS, REMOVED_ALGOS, load_run_config
from carla_rl_common.config import ConfigError


def test_her_sac_is_no_algorithm_name():
    assert "her_sac" not in ALGOS and "her_sac" not in ALGORITHM_CLASSES
    assert set(ALGOS) == set(ALGORITHM_CLASSES)  # what a config may name is what can be built


def test_an_old_her_sac_config_fails_with_the_reason_and_the_replacement(tmp_path):
    with pytest.raises(ConfigError, match="^.*her_sac was removed: .*use algo: her") as err:
        check_algo_kwargs("her_sac", {})
    assert err.value.key == "algo"
    old = tmp_path / "her_sac.yaml"
    old.write_text("algo: her_sac\n")
    with pytest.raises(ConfigError, match="her_sac") as err:
        load_run_config([old])
    assert err.value.key == "algo" and str(old) in str(err.value)
    assert set(REMOVED_ALGOS) == {"her_sac"}
