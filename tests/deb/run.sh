#!/usr/bin/env bash
# The Debian package, as an operator gets it: builds target/debian/flagpost_*.deb
# with cargo-deb ([package.metadata.deb] in transport-std/Cargo.toml),
# installs it with dpkg, checks what it installs, starts the installed
# /usr/bin/flagpost with the packaged /etc/flagpost/flagpost.toml (directly:
# CI has no running systemd to start the unit), checks that it answers a
# confirmed notify and stats, then purges the package. Needs root and
# cargo-deb (test.sh installs it). Exits non-zero on the first failure.
#
#   tests/deb/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
    echo "skipped: installing a package with dpkg needs root (CI runs as root)"
    exit 0
fi

fail() { echo "FAIL: $*" >&2; [ -s "$work/serve.err" ] && cat "$work/serve.err" >&2; exit 1; }
ok() { echo "ok: $*"; }
# wait_for FILE PATTERN PID WHAT: until grep finds PATTERN in FILE, for at
# most 30 s, failing with WHAT if it does not or process PID exits first
wait_for() {
    local deadline=$(($(date +%s) + 30))
    until grep -q "$2" "$1"; do
        kill -0 "$3" 2>/dev/null || fail "$4: the process exited ($(tail -n 3 "$1"))"
        [ "$(date +%s)" -lt "$deadline" ] || fail "$4 ($(tail -n 3 "$1"))"
        sleep 0.1
    done
}

work=$(mktemp -d)
serve_pid=
installed=
cleanup() {
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
    [ -n "$installed" ] && dpkg --purge flagpost >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo deb -p flagpost-std --locked --output "$work/"
deb=$(ls "$work"/flagpost_*.deb)
ok "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n 's/^ *\(Package\|Version\|Depends\):/  &/p'

dpkg -i "$deb"
installed=1
for f in /usr/bin/flagpost /etc/flagpost/flagpost.toml \
    /lib/systemd/system/flagpost.service /lib/systemd/system/flagpost.socket; do
    [ -e "$f" ] || [ -e "/usr$f" ] || fail "the package did not install $f"
done
dpkg-query -W -f='${Conffiles}\n' flagpost | grep -q /etc/flagpost/flagpost.toml ||
    fail "/etc/flagpost/flagpost.toml is not a conffile"
ok "installed: /usr/bin/flagpost ($(/usr/bin/flagpost --version)), the units, the conffile"

/usr/bin/flagpost serve --config /etc/flagpost/flagpost.toml --bind 127.0.0.1:0 \
    >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
wait_for "$work/serve.out" '^listening on ' "$serve_pid" \
    "the installed flagpost serve did not report its address"
broker=$(sed -n 's/^listening on //p' "$work/serve.out" | head -n1)
ok "the installed broker serves on $broker"
/usr/bin/flagpost notify status --broker "$broker" --confirm --timeout 5s ||
    fail "notify --confirm to the installed broker"
/usr/bin/flagpost stats --broker "$broker" >"$work/stats.out" || fail "stats from the installed broker"
grep -Eq '^flagpost_[a-z_]*acks[a-z_]* [1-9]' "$work/stats.out" || fail "stats shows no ack"
ok "it answers: a confirmed notify, stats ($(grep -c . "$work/stats.out") lines)"
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
serve_pid=

# As the socket unit starts it (CI has no running systemd): systemd-socket-
# activate passes the UDP and the TCP socket (LISTEN_FDS) to the installed
# broker, which starts on the first datagram and connection; then, as the
# README's walkthrough: a listener, a notification, a metrics scrape.
if command -v systemd-socket-activate >/dev/null; then
    port=$((20000 + RANDOM % 20000))
    addr=127.0.0.1:$port
    metrics_port=$((port + 1))
    systemd-socket-activate --datagram -l "$addr" -- \
        systemd-socket-activate -l "$addr" -- \
        /usr/bin/flagpost serve --config /etc/flagpost/flagpost.toml \
        --metrics "127.0.0.1:$metrics_port" >"$work/act.out" 2>"$work/serve.err" &
    serve_pid=$!
    wait_for "$work/serve.err" "^Listening on $addr" "$serve_pid" \
        "systemd-socket-activate did not bind $addr"
    # the first datagram activates the UDP stage, the listener's
    # connection the TCP stage and the broker, which then acks the datagram
    /usr/bin/flagpost notify status --broker "$addr" --confirm --timeout 20s \
        >"$work/first.out" 2>&1 &
    first_pid=$!
    /usr/bin/flagpost listen --broker "$addr" --once --json --timeout 30s \
        >"$work/listen.out" 2>"$work/listen.err" &
    listen_pid=$!
    wait_for "$work/listen.err" "listening on $addr" "$listen_pid" \
        "the activated broker never took the listener"
    wait "$first_pid" || fail "the activating notify was not acked: $(cat "$work/first.out")"
    /usr/bin/flagpost notify status --broker "$addr" --confirm --timeout 5s ||
        fail "notify --confirm to the activated broker"
    wait "$listen_pid" || fail "listen --once: $(cat "$work/listen.err")"
    grep -q '"flag":"status"' "$work/listen.out" || fail "the listener saw no status: $(cat "$work/listen.out")"
    grep -q "socket activation" "$work/serve.err" || fail "the broker did not serve the passed sockets"
    ok "socket-activated: the listener woke on the status update"
    exec 3<>"/dev/tcp/127.0.0.1/$metrics_port" || fail "metrics port"
    printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    cat <&3 >"$work/metrics.txt"
    exec 3<&-
    grep -q '^flagpost_build_info{' "$work/metrics.txt" || fail "no flagpost_build_info in the scrape"
    grep -Eq '^flagpost_acks_total [1-9]' "$work/metrics.txt" || fail "the scrape shows no ack"
    ok "metrics scraped ($(grep -c '^flagpost_' "$work/metrics.txt") flagpost_ samples)"
    kill "$serve_pid"
    wait "$serve_pid" 2>/dev/null || true
    serve_pid=
else
    echo "systemd-socket-activate missing (Debian package systemd): the activated walkthrough is not run"
fi

dpkg --purge flagpost
installed=
[ ! -e /usr/bin/flagpost ] || fail "/usr/bin/flagpost is still there after dpkg --purge"
[ ! -e /etc/flagpost/flagpost.toml ] || fail "the conffile is still there after dpkg --purge"
ok "removed (dpkg --purge)"
