#!/usr/bin/env bash
# The Windows build under Wine: builds flagpost.exe (x86_64-pc-windows-gnu,
# mingw-w64, release) and runs the CLI end to end with it on loopback —
# serve, listen, notify with and without --confirm, stats, the failures a
# dead broker must report — then the Windows service mode (install, start
# under Wine's service control manager, stats against it, stop, uninstall;
# a service whose config is missing reports its failure to the SCM).
#
# Wine 8 (Debian 12) has no ProcessPrng in bcryptprimitives.dll, which
# Rust's std (1.78+) imports: a shim DLL built here from processprng.c
# (calling SystemFunction036, RtlGenRandom) goes beside the .exe. Real
# Windows 10+ needs none.
#
# Needs: rustup target x86_64-pc-windows-gnu, gcc-mingw-w64-x86-64, wine64
# (test.sh installs them). Prints each check; exits non-zero on the first
# real failure. Uses its own throwaway WINEPREFIX and ends its wineserver.
#
#   tests/windows/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

target=x86_64-pc-windows-gnu
target_dir=${CARGO_TARGET_DIR:-target}
start=$(date +%s)

cargo build --release --locked -p flagpost-std --bin flagpost --target "$target"
built=$(date +%s)

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    WINEPREFIX="$work/prefix" wineserver -k 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cp "$target_dir/$target/release/flagpost.exe" "$work/"
x86_64-w64-mingw32-gcc -O2 -shared -o "$work/bcryptprimitives.dll" \
    tests/windows/processprng.c -ladvapi32

export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
exe="$work/flagpost.exe"
fp() { wine "$exe" "$@"; }

fail() { echo "FAIL: $*" >&2; for f in "$work"/*.out "$work"/*.err; do [ -s "$f" ] && { echo "--- $f"; cat "$f"; }; done >&2; exit 1; }
ok() { echo "ok: $*"; }

# wait_for FILE PATTERN SECONDS: until a line of FILE matches (a deadline,
# not a sleep standing in for the condition)
wait_for() {
    local deadline=$(($(date +%s) + $3))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# expect CODE COMMAND…: the command exits with CODE
expect() {
    local want=$1 rc=0
    shift
    "$@" >"$work/cmd.out" 2>"$work/cmd.err" || rc=$?
    [ "$rc" = "$want" ] || fail "$* exited $rc, expected $want"
}

wine_start=$(date +%s)
# the prefix is created on the first start (about 10 s)
# (module errors shown: a missing DLL such as bcryptprimitives.dll is named)
WINEDEBUG=err+module fp --version >"$work/version.out" 2>"$work/version.err" ||
    fail "flagpost.exe --version exited $?"
ok "flagpost.exe starts under $(wine --version 2>/dev/null) ($(tr -d '\r' <"$work/version.out"))"

# serve on an ephemeral port; the bound address is its first stdout line
wine "$exe" serve --bind 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
serve_pid=$!
wait_for "$work/serve.out" "^listening on " 60 || fail "serve did not report its address"
broker=$(sed -n 's/^listening on //p' "$work/serve.out" | head -n1 | tr -d '\r')
ok "serve: listening on $broker"

# listen --once, then a confirmed notify wakes it
wine "$exe" listen --broker "$broker" --once --timeout 60s >"$work/listen1.out" 2>"$work/listen1.err" &
listen_pid=$!
pids+=($listen_pid)
wait_for "$work/listen1.err" "listening on" 60 || fail "listen did not connect"
ok "listen: connected"
expect 0 fp notify status --broker "$broker" --confirm --timeout 10s
grep -q "acknowledged" "$work/cmd.err" || fail "notify --confirm printed no acknowledgement"
ok "notify --confirm: $(tr -d '\r' <"$work/cmd.err")"
wait "$listen_pid" || fail "listen --once exited $?"
grep -q "^status" "$work/listen1.out" || fail "listen printed no status line"
ok "listen: woken (status)"

# the same without --confirm: fire and forget, the listener still wakes
wine "$exe" listen --broker "$broker" --once --timeout 60s >"$work/listen2.out" 2>"$work/listen2.err" &
listen_pid=$!
pids+=($listen_pid)
wait_for "$work/listen2.err" "listening on" 60 || fail "listen did not connect"
expect 0 fp notify non-status --broker "$broker"
ok "notify (unconfirmed): $(tr -d '\r' <"$work/cmd.err")"
wait "$listen_pid" || fail "listen --once exited $?"
grep -q "^non-status" "$work/listen2.out" || fail "listen printed no non-status line"
ok "listen: woken (non-status)"

# stats: the broker's counters, with the confirmed notify's ack among them
expect 0 fp stats --broker "$broker"
grep -Eq '^flagpost_[a-z_]*acks[a-z_]* [1-9]' "$work/cmd.out" || fail "stats shows no ack"
ok "stats: $(grep -c . "$work/cmd.out") lines, acks counted"

# a dead broker is reported, never a success
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
rc=0
fp stats --broker "$broker" >"$work/cmd.out" 2>"$work/cmd.err" || rc=$?
[ "$rc" != 0 ] || fail "stats against a stopped broker exited 0"
ok "stats, broker stopped: exit $rc ($(tr -d '\r' <"$work/cmd.err"))"
rc=0
fp notify status --broker "$broker" --confirm --timeout 2s >"$work/cmd.out" 2>"$work/cmd.err" || rc=$?
[ "$rc" != 0 ] || fail "notify --confirm to a stopped broker exited 0"
ok "notify --confirm, broker stopped: exit $rc ($(tr -d '\r' <"$work/cmd.err"))"
cli_done=$(date +%s)

# The service mode: install (serve flags stored in the service's command
# line), start under Wine's service control manager, answer stats, stop,
# uninstall. A port of our own: the service cannot report an ephemeral one.
port=$((20000 + RANDOM % 20000))
expect 0 fp service install --bind "127.0.0.1:$port"
ok "service install"
key='HKLM\System\CurrentControlSet\Services\flagpost'
wine reg query "$key" /v ImagePath >"$work/reg.out" 2>&1 || fail "the service is not registered ($key)"
grep -qi "service run --bind 127.0.0.1:$port" "$work/reg.out" || fail "the service's command line lacks 'service run' and its serve flags"
ok "service registered: $(grep -i ImagePath "$work/reg.out" | tr -d '\r' | sed 's/^ *//')"
wine net start flagpost >"$work/net.out" 2>&1 || fail "net start flagpost"
ok "service started (net start)"
deadline=$(($(date +%s) + 30))
until fp stats --broker "127.0.0.1:$port" >"$work/cmd.out" 2>"$work/cmd.err"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "the service's broker never answered stats"
    sleep 0.2
done
ok "service: its broker answers stats on 127.0.0.1:$port"
wine net stop flagpost >"$work/net.out" 2>&1 || fail "net stop flagpost: $(cat "$work/net.out")"
rc=0
fp stats --broker "127.0.0.1:$port" >"$work/cmd.out" 2>"$work/cmd.err" || rc=$?
[ "$rc" != 0 ] || fail "the service's broker still answers after net stop"
ok "service stopped (net stop): its broker no longer answers (stats exit $rc)"
expect 0 fp service uninstall
if wine reg query "$key" >"$work/reg.out" 2>&1; then fail "the service is still registered after uninstall"; fi
ok "service uninstall"

# a service that cannot serve (its config file is missing) tells the SCM:
# stopped with a service-specific error (1066), never running. (Wine's
# `net start` says "started successfully" either way; `sc query` tells.)
expect 0 fp service install --config 'C:\nonexistent\flagpost.toml'
wine net start flagpost >"$work/net.out" 2>&1 || true
deadline=$(($(date +%s) + 30))
until wine sc query flagpost 2>/dev/null | tr -d '\r' >"$work/sc.out" && grep -q "WIN32_EXIT_CODE *: *1066" "$work/sc.out"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "a service with a missing config did not report its failure: $(cat "$work/sc.out")"
    sleep 0.2
done
grep -q "STOPPED" "$work/sc.out" || fail "a service with a missing config is not stopped"
ok "a service with a missing config: stopped, service-specific error (sc query: $(grep -o 'SERVICE_EXIT_CODE.*' "$work/sc.out"))"
expect 0 fp service uninstall

end=$(date +%s)
echo "windows under wine: passed (build $((built - start)) s, CLI $((cli_done - wine_start)) s, service $((end - cli_done)) s)"
