#!/usr/bin/env bash
# The engines of the test matrix, beside the system one (Debian bookworm's docker.io 20.10):
#
#   docker26      Docker 26.1 (Debian trixie's packages), overlay2 graph driver
#   docker26-c8d  the same engine with the containerd image store
#   podman        Podman 4.3 (bookworm) behind its Docker-compatible API
#
#   bash scripts/engines.sh up      install what is missing and start every engine (idempotent)
#   bash scripts/engines.sh hosts   print "NAME DOCKER_HOST" for every engine of the matrix, system one first
#   bash scripts/engines.sh down    stop the engines this script started (their data stays, as a cache)
#
# Each extra engine shares nothing with the system one: its own containerd (own root, state and socket),
# its own data and exec roots, its own bridge, no iptables rules, and a daemon.json of its own so
# /etc/docker is never read. Trixie's binaries run on bookworm's glibc, except runc: bookworm's is used.
# Trixie's packages are unpacked into a cache folder, never installed, so the system's apt state is unchanged.
set -euo pipefail

CACHE=/var/cache/slimtrace-engines
UNPACKED="$CACHE/root"
DATA=/var/lib/slimtrace-engines
RUN=/run/slimtrace-engines
TRIXIE_PACKAGES=(docker.io containerd tini docker-cli)
SYSTEM_PACKAGES=(podman runc iproute2)
WAIT_SECONDS=60
SYSTEM_HOST=unix:///var/run/docker.sock

# name -> bridge name and address; the c8d engine turns the containerd image store on.
declare -A BRIDGE=([docker26]=slimbr26 [docker26-c8d]=slimbr27)
declare -A BRIDGE_ADDRESS=([docker26]=10.213.26.1/24 [docker26-c8d]=10.213.27.1/24)
declare -A DAEMON_JSON=(
    [docker26]='{"storage-driver": "overlay2"}'
    [docker26-c8d]='{"features": {"containerd-snapshotter": true}}'
)
DOCKER_ENGINES=(docker26 docker26-c8d)

host_of() {
    case "$1" in
        docker20) echo "$SYSTEM_HOST" ;;
        podman) echo "unix://$RUN/podman/podman.sock" ;;
        *) echo "unix://$RUN/$1/docker.sock" ;;
    esac
}

answers() {
    DOCKER_HOST="$(host_of "$1")" python3 - <<'PY' > /dev/null 2>&1
import docker
docker.from_env(timeout=5).ping()
PY
}

wait_for() {
    local name=$1 log=$2
    for _ in $(seq "$WAIT_SECONDS"); do
        if answers "$name"; then
            return
        fi
        sleep 1
    done
    echo "engines.sh: $name did not answer within ${WAIT_SECONDS} s; end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

install_system_packages() {
    local missing=() package
    for package in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
}

# The mirror apt already uses for bookworm, so trixie comes from the same place.
debian_mirror() {
    local mirror
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Origin: Debian' 2>/dev/null | grep -v security | head -n 1)
    echo "${mirror:-http://deb.debian.org/debian/}"
}

unpack_trixie_engine() {
    [ -x "$UNPACKED/usr/sbin/dockerd" ] && [ -x "$UNPACKED/usr/bin/containerd" ] && return
    local apt_dir="$CACHE/apt" debs="$CACHE/debs"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main" \
        > "$apt_dir/sources.list"
    local options=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
    apt-get "${options[@]}" update -q
    (cd "$debs" && apt-get "${options[@]}" download "${TRIXIE_PACKAGES[@]}")
    rm -rf "$UNPACKED.partial" && mkdir -p "$UNPACKED.partial"
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$UNPACKED.partial"
    done
    rm -rf "$UNPACKED" && mv "$UNPACKED.partial" "$UNPACKED"
}

ensure_bridge() {
    local bridge=$1 address=$2
    if ! ip link show "$bridge" > /dev/null 2>&1; then
        ip link add "$bridge" type bridge
        ip addr add "$address" dev "$bridge"
    fi
    ip link set "$bridge" up
}

start_docker_engine() {
    local name=$1
    answers "$name" && return
    local run="$RUN/$name" data="$DATA/$name"
    mkdir -p "$run" "$data"
    ensure_bridge "${BRIDGE[$name]}" "${BRIDGE_ADDRESS[$name]}"
    cat > "$run/containerd.toml" <<EOF
version = 2
root = "$data/containerd"
state = "$run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
EOF
    echo "${DAEMON_JSON[$name]}" > "$run/daemon.json"
    # Trixie's dockerd, containerd, shims, docker-proxy and docker-init first; runc from bookworm.
    local path="$UNPACKED/usr/sbin:$UNPACKED/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    # Daemons run from /: conmon and the shims inherit the working directory, and a removed one breaks them.
    (cd / && PATH="$path" setsid "$UNPACKED/usr/bin/containerd" --config "$run/containerd.toml" \
        > "$run/containerd.log" 2>&1 < /dev/null &)
    for _ in $(seq "$WAIT_SECONDS"); do
        [ -S "$run/containerd.sock" ] && break
        sleep 1
    done
    (cd / && PATH="$path" setsid "$UNPACKED/usr/sbin/dockerd" \
        --host "unix://$run/docker.sock" --data-root "$data/docker" --exec-root "$run/exec" \
        --pidfile "$run/dockerd.pid" --containerd "$run/containerd.sock" \
        --containerd-namespace "slimtrace-$name" --containerd-plugins-namespace "slimtrace-$name-plugins" \
        --bridge "${BRIDGE[$name]}" --iptables=false --ip6tables=false --ip-forward=false \
        --config-file "$run/daemon.json" > "$run/dockerd.log" 2>&1 < /dev/null &)
    wait_for "$name" "$run/dockerd.log"
}

start_podman() {
    answers podman && return
    mkdir -p "$RUN/podman"
    (cd / && setsid podman system service --time=0 "$(host_of podman)" > "$RUN/podman/service.log" 2>&1 < /dev/null &)
    wait_for podman "$RUN/podman/service.log"
}

up() {
    install_system_packages
    unpack_trixie_engine
    for name in "${DOCKER_ENGINES[@]}"; do
        start_docker_engine "$name"
    done
    start_podman
}

hosts() {
    for name in docker20 "${DOCKER_ENGINES[@]}" podman; do
        echo "$name $(host_of "$name")"
    done
}

stop_pidfile() {
    local pidfile=$1
    [ -f "$pidfile" ] || return 0
    kill "$(cat "$pidfile")" 2> /dev/null || true
    rm -f "$pidfile"
}

down() {
    local name
    for name in "${DOCKER_ENGINES[@]}"; do
        stop_pidfile "$RUN/$name/dockerd.pid"
        pkill -f "containerd --config $RUN/$name/containerd.toml" || true
    done
    pkill -f "podman system service --time=0 $(host_of podman)" || true
}

case "${1:-}" in
    up) up ;;
    hosts) hosts ;;
    down) down ;;
    *) echo "usage: bash scripts/engines.sh up|hosts|down" >&2; exit 2 ;;
esac
