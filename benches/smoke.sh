#!/usr/bin/env bash
# The benchmarks' CI step (test.sh runs it): builds flagpost-benches, runs
# its unit tests and every criterion benchmark once, then every
# `flagpost-bench` scenario at its smoke sizes (`--quick`, debug build),
# each checked for the figure rows it prints. Nothing is written: no
# `--write`, no charts; BENCHMARKS.md is only ever rewritten by a full run
# by hand. `peers` runs whatever peer servers are installed (Flagpost alone
# when none is; benches/peers.sh installs them).
#
#   benches/smoke.sh            all of it
#   benches/smoke.sh wake idle  only these scenarios (no cargo test)
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=(wake ingest fanout idle hotloop flood scale-ingest scale-quiet scale-stuck peers database sse federation)
if [ $# -gt 0 ]; then
    scenarios=("$@")
else
    # the charts' font, for the chart-drawing unit test (without it the
    # test checks that the missing package is named)
    if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
        { apt-get update -qq && apt-get install -y -qq fonts-dejavu-core; } ||
            echo "fonts-dejavu-core not installed: the chart test checks the message instead"
    fi
    # the report's unit tests, the binary's, and each criterion benchmark once
    cargo test -p flagpost-benches --lib --bins --benches
fi
cargo build -q -p flagpost-benches --bin flagpost-bench
bench="${CARGO_TARGET_DIR:-target}/debug/flagpost-bench"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

# smoke NAME ARGS... -- REGEX...: runs `flagpost-bench ARGS`, shows its
# output, and fails unless it exits 0 and every REGEX (grep -E) matches a line
smoke() {
    local name="$1"
    shift
    local args=()
    while [ "$1" != "--" ]; do
        args+=("$1")
        shift
    done
    shift
    printf '\n-- %s: flagpost-bench %s\n' "$name" "${args[*]}"
    local start=$SECONDS
    if ! "$bench" "${args[@]}" >"$out" 2>&1; then
        cat "$out"
        echo "smoke $name: flagpost-bench ${args[*]} failed" >&2
        return 1
    fi
    cat "$out"
    local re
    for re in "$@"; do
        if ! grep -qE "$re" "$out"; then
            echo "smoke $name: no line matches /$re/" >&2
            return 1
        fi
    done
    if grep -qE '^(wrote|chart)' "$out"; then
        echo "smoke $name: something was written" >&2
        return 1
    fi
    echo "-- $name: ok in $((SECONDS - start)) s"
}

num='[0-9][0-9.,]*'
for s in "${scenarios[@]}"; do
    case "$s" in
        wake) smoke wake wake --quick -- \
            "^floor: UDP→relay→TCP→reader +$num +$num +$num" \
            "^ratio to floor \(p50/p99\): Notifier $num/$num, raw datagram $num/$num" ;;
        ingest) smoke ingest ingest --quick -- \
            "ratio to floor: rate $num .*CPU per million $num" ;;
        fanout) smoke fanout fanout --quick -- \
            "^1 +$num +$num +$num +$num" \
            "^100 +$num +$num +$num +$num" ;;
        idle) smoke idle idle --quick -- \
            "^idle: 100 listeners connected for 1 s: broker CPU $num s, $num wake-ups per second" ;;
        hotloop) smoke hotloop hotloop --quick -- \
            "calls per second: median $num M, slowest round $num M" \
            "listener's last wake after the last call: p50 $num µs, p99 $num µs" ;;
        flood) smoke flood flood --quick -- \
            "each flooded listener got $num frames/s" \
            "quiet listener wake latency p50/p99: unloaded $num/$num µs, under flood $num/$num µs" ;;
        scale-ingest) smoke scale-ingest scale --quick --part ingest -- \
            "^no listeners +0 +— +$num" \
            "^\\(c\\) all channels, untargeted +100 +reading +$num +$num +$num" ;;
        scale-quiet) smoke scale-quiet scale --quick --part quiet -- \
            "^  Flagpost +unloaded +p50 +$num µs +p99 +$num µs" \
            "^  Flagpost +flood from 2 threads +p50 +$num µs +p99 +$num µs" ;;
        scale-stuck) smoke scale-stuck scale --quick --part stuck -- \
            "^  full speed +Flagpost's SO_RCVBUF read $num frames first; Send-Q max $num B/listener" ;;
        # the wake, throughput (1 subscriber) and idle-memory rows
        peers) smoke peers peers --quick -- \
            "^Flagpost +$num +$num +$num +$num +[0-9]+" \
            "^Flagpost +1 +$num +$num" \
            "^Flagpost +$num *$" ;;
        # a throwaway PostgreSQL cluster (test.sh installs PostgreSQL)
        database) smoke database database --quick -- \
            "^Flagpost, PostgreSQL trigger → broker +20 +$num +$num +[0-9]+ +0 +$num" \
            "^Flagpost, Notifier after commit +20 +$num +$num +[0-9]+ +0 +$num" \
            "^Flagpost, \`flagpost notify\` after commit +20 +$num +$num +[0-9]+ +0 +$num" \
            "^Flagpost, PostgreSQL trigger → broker, intervals 0 s +0 +0 +0/0/0/0" ;;
        # 10 SSE clients of the broker's /events beside a TCP listener
        sse) smoke sse sse --quick -- \
            "^sse: 10 clients connected: broker RSS $num KiB → $num KiB, $num bytes per SSE client" \
            "^sse ratio to the TCP listener \(p50/p99\): first SSE client $num/$num, last SSE client $num/$num" ;;
        # two brokers federated through a nats-server (test.sh installs it)
        federation) smoke federation federation --quick -- \
            "^cross-broker: datagram → A → NATS → B → listener +$num +$num" \
            "^NATS only: publish → nats-server → subscriber +$num +$num" \
            "^ratio cross-broker / single broker \(p50/p99\): $num/$num" \
            "^federated ingest at broker B, windowed \(≤ 4096 in flight\): 5000 messages, B took 5000 in $num s: $num/s; receive drops 0" \
            "^federated ingest at broker B, one burst: 5000 messages published" ;;
        *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
done
echo
echo "flagpost-bench smoke: ${scenarios[*]}: ok"
