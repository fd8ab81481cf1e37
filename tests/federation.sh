#!/usr/bin/env bash
# The federation's tests (issue 18, the std side): installs nats-server
# (Debian's package) and openssl (the TLS test's certificates) when they are
# missing, then runs tests/tests/federation.rs (brokers joined by a real
# nats-server on loopback) and the federation config's unit tests. Reuses
# CARGO_TARGET_DIR (or target/).
#
#   tests/federation.sh                 install and run
#   tests/federation.sh --install-only  install only (test.sh's workspace
#                                       run then runs the tests)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    apt-get update -qq && apt-get install -y -qq nats-server
fi
# openssl makes the TLS test's throwaway CA and server certificate
if ! command -v openssl >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq openssl
fi
[ "${1:-}" = "--install-only" ] && exit 0

# the tests run the flagpost binary built beside them
cargo build -p flagpost-std --bins
cargo test -p flagpost-std --lib config::federation
cargo test -p flagpost-tests --test federation
