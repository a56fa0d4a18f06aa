#!/usr/bin/env bash
# Prepare this machine for the test suite: the Debian packages it needs, a running Docker engine,
# and the project installed with its test extra. Idempotent: what is already in place is left alone.
# Runs as root (CI and developer machines are root).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# docker.io: the engine; debootstrap: the fixtures' base image; gcc, libc6-dev: static fixture
# programs; libcap2-bin: getcap/setcap for checking file capabilities; wrk: the load generator of
# the benchmarks' tracing-overhead measurement (python -m bench); chromium: the HTML report is
# opened in headless Chromium by tests/test_reports.py.
APT_PACKAGES=(docker.io debootstrap gcc libc6-dev libcap2-bin wrk chromium)
ENGINE_WAIT_SECONDS=60

install_missing_packages() {
    local missing=() package
    for package in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
}

engine_answers() {
    docker info > /dev/null 2>&1
}

start_engine() {
    if engine_answers; then
        return
    fi
    # No init system runs dockerd on these machines, and CI ends what a session left running.
    setsid dockerd > /var/log/dockerd.log 2>&1 < /dev/null &
    for _ in $(seq "$ENGINE_WAIT_SECONDS"); do
        if engine_answers; then
            return
        fi
        sleep 1
    done
    echo "setup.sh: dockerd did not answer within ${ENGINE_WAIT_SECONDS} s; end of /var/log/dockerd.log:" >&2
    tail -n 20 /var/log/dockerd.log >&2
    exit 1
}

install_missing_packages
start_engine
cd "$REPO_ROOT"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -e '.[test]'
