#!/usr/bin/env bash
# Installs the servers `flagpost-bench peers` compares Flagpost with, from
# Debian's packages: redis-server, postgresql, mosquitto, nats-server
# (nats-server is packaged from Debian 12 on), and fonts-dejavu-core, the
# font of the charts `flagpost-bench --write` draws. Only what is missing is
# installed; the packages' own system services are not started — the bench
# starts its own instance of each server as a child process, on a free
# 127.0.0.1 port with a temporary directory, and stops it by PID.
#
#   benches/peers.sh                   install what is missing (as root)
#   benches/peers.sh --run [--quick]   then run `flagpost-bench peers`
set -euo pipefail
cd "$(dirname "$0")/.."

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]
}

need=()
have redis-server || need+=(redis-server)
# Debian keeps PostgreSQL's server binaries in /usr/lib/postgresql/<major>/bin
{ have postgres && have initdb; } || compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null ||
    need+=(postgresql)
have mosquitto || need+=(mosquitto)
have nats-server || need+=(nats-server)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)

if ((${#need[@]} == 0)); then
    echo "peers: redis-server, postgresql, mosquitto, nats-server and fonts-dejavu-core are installed"
else
    if [ "$(id -u)" != 0 ]; then
        echo "peers: run as root to install: ${need[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    install=()
    for p in "${need[@]}"; do
        # (not a pipe into grep -q: with pipefail its early exit fails it)
        if [[ "$(apt-cache policy "$p")" == *"Candidate: "[0-9]* ]]; then
            install+=("$p")
        else
            echo "peers: $p is not packaged for this system; flagpost-bench skips it" >&2
        fi
    done
    if ((${#install[@]})); then
        # keep the packages' services from starting (policy-rc.d is honoured
        # by invoke-rc.d and deb-systemd-invoke); the bench runs its own
        policy=/usr/sbin/policy-rc.d
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod +x "$policy"
            trap 'rm -f "$policy"' EXIT
        fi
        apt-get install -y -qq "${install[@]}"
    fi
fi

if [ "${1:-}" = "--run" ]; then
    shift
    cargo run --release -p flagpost-benches --bin flagpost-bench -- peers "$@"
fi
