#!/usr/bin/env bash
# One-command install: .venv with pinned ROS 2 Jazzy wheels and every Python dependency, the CMake path fix
# of ../shared/notes/ros2-from-pypi.md, the interface packages built with colcon into the venv prefix, and
# the Python packages installed editable. Each stage is skipped when its inputs did not change (stamp files),
# so a second run with nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

stamp_ok() { [ -f "$VENV/.stamp-$1" ] && [ "$(cat "$VENV/.stamp-$1")" = "$2" ]; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi

req_hash=$(hash_of requirements.txt)
if ! stamp_ok requirements "$req_hash"; then
  echo "[setup] installing pinned requirements (torch CPU wheel from local disk)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$req_hash" > "$VENV/.stamp-requirements"
fi

# The ROS wheels' CMake exports hard-code the wheel builder's Python paths; point them at this interpreter.
"$VENV/bin/python" scripts/fix_cmake_paths.py "$VENV"

# carla_msgs and tf2_msgs are ours to build only when the environment has none (a real bridge's / ROS's win).
skip=()
for pkg in carla_msgs tf2_msgs; do
  if "$VENV/bin/python" scripts/has_foreign_package.py "$pkg" "$VENV"; then
    echo "[setup] $pkg found in the environment: not building our copy"
    skip+=(--packages-skip "$pkg")
  fi
done
msg_hash=$(hash_of $(find src/carla_msgs src/carla_rl_msgs src/tf2_msgs -type f | sort))
if ! stamp_ok interfaces "$msg_hash${skip[*]:-}"; then
  echo "[setup] building interfaces with colcon (about a minute on 2 cores)"
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  PATH="$VENV/bin:$PATH" "$VENV/bin/colcon" --log-base build/log build \
    --base-paths src --build-base build/colcon --install-base "$VENV" --merge-install \
    --packages-select carla_msgs carla_rl_msgs tf2_msgs "${skip[@]}" \
    --event-handlers console_direct- \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -Wno-dev >/dev/null
  echo "$msg_hash${skip[*]:-}" > "$VENV/.stamp-interfaces"
fi

py_hash=$(hash_of src/*/setup.py src/*/package.xml)
if ! stamp_ok python "$py_hash"; then
  echo "[setup] installing the carla_rl_* Python packages (editable)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e src/carla_rl_common -e src/carla_rl_sim -e src/carla_rl_env -e src/carla_rl_agents -e src/carla_rl_bags -e src/carla_rl_viz -e src/carla_rl_bringup
  echo "$py_hash" > "$VENV/.stamp-python"
fi
echo "[setup] ready: $VENV/bin/carla-rl --help"
