#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
# Some end-to-end tests need root and /dev/net/tun (network namespaces with
# a TAP device); the lossy-link test (tests/tests/lossy_link.rs) needs root,
# network namespaces and nftables (`nft`, for its packet loss); the
# federation test (tests/tests/federation_netns.rs) root, namespaces and
# nats-server. When not
# root, or a device or tool is missing, they print why and pass without
# running; a namespace that cannot be created fails them. The database
# tests need PostgreSQL's server binaries (installed below when missing) and,
# as root, the `postgres` user the package makes.
#
#   ./test.sh            everything CI runs (fuzz targets FUZZ_SECS each, default 30)
#   FUZZ_SECS=5 ./test.sh   the same with shorter fuzz runs
#
# Long fuzzing, soak and benchmark runs are separate commands (see README).
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECS="${FUZZ_SECS:-30}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s ==\n' "$*"; }

step "toolchains and tools"
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add thumbv6m-none-eabi thumbv7em-none-eabihf x86_64-pc-windows-gnu x86_64-apple-darwin
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi
# iproute2 for the end-to-end tests' network namespaces, TAP device and veth
# pair; nftables for the lossy-link test's packet loss
if ! command -v ip >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq iproute2
fi
if ! command -v nft >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nftables
fi
# systemd for the service-manager tests (tests/tests/systemd.rs):
# systemd-socket-activate and systemd-analyze (neither needs systemd running)
if ! command -v systemd-socket-activate >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq systemd
fi
# PostgreSQL for the database tests (tests/src/postgres.rs starts throwaway
# clusters of its own on loopback ports and stops them by PID): the server
# binaries and pgbench, without the package's default cluster
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    mkdir -p /etc/postgresql-common
    [ -e /etc/postgresql-common/createcluster.conf ] ||
        echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
    apt-get update -qq && apt-get install -y -qq postgresql
fi
# promtool (Debian package prometheus) lints a real /metrics scrape in
# transport-std/tests/metrics_http.rs
if ! command -v promtool >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus
fi
# nats-server (Debian package) for the federation tests and benchmark
# (tests/src/nats.rs and `flagpost-bench federation` start their own
# instances); the package's own service is kept from starting
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    apt-get update -qq && apt-get install -y -qq nats-server
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
fi
# openssl makes the federation TLS test's throwaway CA and certificate
if ! command -v openssl >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq openssl
fi
rustc --version; cargo +nightly fuzz --version

step "format"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)
for board in firmware/boards/*/Cargo.toml; do (cd "$(dirname "$board")" && cargo fmt -- --check); done

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "tests"
# the end-to-end tests run the real binaries (broker, gateway simulator);
# the benchmarks (their peer clients, tokio, plotters) are the step below
cargo build --workspace --exclude flagpost-benches --bins
cargo test --workspace --exclude flagpost-benches

step "flagpost-std features: the client API without the CLI, HTTP and config crates; the tokio face"
cargo build -p flagpost-std --no-default-features
heavy=$(cargo tree -p flagpost-std --no-default-features --features tokio -e normal --prefix none |
    grep -E '^(clap|clap_complete|tracing-subscriber|serde_json|ctrlc|httparse|form_urlencoded|prometheus-client|toml|async-nats) v' | sort -u || true)
if [ -n "$heavy" ]; then echo "the client API pulls in: $heavy" >&2; exit 1; fi
cargo clippy -p flagpost-std --all-targets --features tokio -- -D warnings
cargo test -p flagpost-std --features tokio --test asynch

step "C ABI (flagpost-ffi): the header matches the code; C tests with gcc, under valgrind and ASan"
bash ffi/test.sh

step "Python package (flagpost-py): abi3 wheel, mypy --strict, pytest against real brokers"
bash python/test.sh

step "the dashboard in a real browser (headless Chromium over WebDriver, Selenium)"
bash tests/browser/run.sh

step "gateway end to end (TAP device in a namespace; prints its latencies, or why it could not run)"
cargo test -p flagpost-gateway-sim --test tap_e2e -- --nocapture

step "benchmarks (smoke: each criterion benchmark once, each flagpost-bench scenario at smoke sizes; nothing written)"
./benches/smoke.sh

step "core feature matrix"
cargo test -p flagpost-core --features std
cargo build -p flagpost-core --features defmt
cargo build -p flagpost-core --target thumbv6m-none-eabi
cargo build -p flagpost-core --target thumbv6m-none-eabi --features defmt
cargo build -p flagpost-core --target thumbv7em-none-eabihf --features defmt

step "firmware: no_std builds of the application"
cargo build -p flagpost-firmware --target thumbv6m-none-eabi --features defmt
cargo build -p flagpost-firmware --target thumbv7em-none-eabihf --features defmt

step "gateway boards: release builds and the flash/RAM budget"
./firmware/boards/build.sh

step "flagpost-embedded: features and no_std builds"
cargo test -p flagpost-embedded --features smoltcp
cargo build -p flagpost-embedded --target thumbv6m-none-eabi --features smoltcp,defmt
cargo build -p flagpost-embedded --target thumbv7em-none-eabihf --features smoltcp,defmt

step "flagpost-std on Windows and macOS (check; clippy on Windows, where the service module builds)"
# (clone_on_copy: postgres/source.rs clones a TLS connector that is a Copy
# NoTls off Linux)
cargo clippy -p flagpost-std --target x86_64-pc-windows-gnu -- -D warnings -A clippy::clone_on_copy
cargo check -p flagpost-std --target x86_64-apple-darwin

# Release hygiene and Windows (issue 16): each step installs what it needs
# and prints the seconds it took.
timed() { local t0; t0=$(date +%s); "$@"; echo "($(( $(date +%s) - t0 )) s)"; }

step "MSRV: Rust 1.88 (README, rust-version) builds flagpost-core and flagpost-std"
rustup toolchain list | grep -q '^1\.88' || rustup toolchain install 1.88 --profile minimal
timed cargo +1.88 build --locked -p flagpost-core -p flagpost-std

step "supply chain: cargo deny (deny.toml)"
command -v cargo-deny >/dev/null || cargo install --locked cargo-deny
# errors only: the duplicate-version warnings (bans) are long; see them with
# `cargo deny check bans`
timed cargo deny -L error check --hide-inclusion-graph licenses bans sources
# the RustSec database lives on GitHub: checked when it can be fetched,
# otherwise said plainly (CI's machine reaches crates.io, not GitHub)
if timeout 30 cargo deny fetch db >/dev/null 2>&1; then
    cargo deny check advisories
else
    echo "advisories NOT checked: the RustSec advisory database (github.com/rustsec/advisory-db) is unreachable from here"
fi

step "Debian package: cargo deb, installed with dpkg, started, removed"
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
timed tests/deb/run.sh

step "Windows: flagpost.exe (mingw-w64) end to end under Wine, and its service mode"
if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || ! command -v wine >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-mingw-w64-x86-64 wine wine64
fi
timed tests/windows/run.sh

step "fuzz (${FUZZ_SECS}s per target)"
./fuzz/run.sh "$FUZZ_SECS"

step "all tests passed"
