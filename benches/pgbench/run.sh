#!/usr/bin/env bash
# What NOTIFY costs the database, and what the WAL source costs instead.
# pgbench inserts into `messages` — one row per transaction (insert1.sql) and
# ten rows per transaction in one statement (insert10.sql) — at 1, 8 and 32
# clients, with flagpost.sql's INSERT trigger disabled ("without"), enabled
# ("with"), and, with WAL=1 (the default), disabled while the broker streams
# the table's WAL ("wal": `flagpost serve --postgres-mode wal`, the
# publication of flagpost-wal.sql and the broker's replication slot), and
# reports commits/s (pgbench's tps: each transaction is one commit), the
# median of RUNS runs of SECS seconds each, and the ratios to "without".
#
#   benches/pgbench/run.sh                     # ≈ 5 min; prints a Markdown table
#   SECS=10 RUNS=5 FSYNC=off CLIENTS="1 32" benches/pgbench/run.sh
#
# Settings (environment): SECS (7), RUNS (3), CLIENTS ("1 8 32"), SCRIPTS
# ("insert1.sql insert10.sql"), FSYNC (on), SYNC (synchronous_commit, on),
# WAL (1: the third column; 0: the first two only, as before), FLAGPOST (the
# broker binary, target/release/flagpost: cargo build --release -p
# flagpost-std --bin flagpost), and, to take the cost apart: LISTENER=0 (no
# listening connection) and NOTIFY=0 (the trigger computes its payloads as
# usual but does not send them: the cost of the trigger alone).
#
# The server runs with wal_level=logical in every run (WAL=1; the WAL source
# needs it, and a restart between columns would break the interleaving), so
# "without" and "with" pay logical's slightly larger WAL records too. For each
# "wal" run the broker is started on a fresh slot (it creates it), a listener
# (`flagpost listen`, all channels) reads its raises, and after pgbench ends
# the script waits until the broker has read every transaction pgbench
# committed (flagpost_postgres_wal_transactions_total) and reports how long
# that took ("caught up after"): the walsender decodes after commit, so a run
# can end with WAL not yet streamed. Then the broker stops and the slot is
# dropped, so that no slot holds WAL during the other runs. Where the WAL
# source's cost goes: the CPU seconds per second of run of the walsender
# (decoding) and of the broker (streaming, notifying), medians; "caught up
# after" is the longest of the runs.
#
# Bounded: 2 scripts × |CLIENTS| × 3 variants × RUNS runs × SECS s (default
# 2×3×3×3×7 s = 378 s) plus ~1 s per run of TRUNCATE and CHECKPOINT and the
# catch-up of each "wal" run (at most 120 s), ≈ 8 min; each pgbench is also
# under `timeout` (SECS + 60 s).
#
# The cluster is a throwaway one: initdb in a temporary directory, the server
# on a free 127.0.0.1 port (trust authentication; nothing else listens), as
# the `postgres` user when run as root (PostgreSQL refuses root), stopped by
# its PID when the script ends, however it ends (trap), and the directory
# removed.
#
# fsync stays ON by default (FSYNC=off to compare): PostgreSQL takes one
# global lock for a committing transaction that has notifications and holds
# it until the commit is done, WAL flush included, so commits that NOTIFY
# flush one after another instead of sharing a flush (group commit). That
# flush is where the cost is; with fsync off it would be hidden. The data
# directory is on ${TMPDIR:-/tmp}: put TMPDIR on the disk a real database
# would use to measure that disk.
#
# Noise: the runs interleave (without, with, then with, without, …) so that
# whatever else the machine does hits both variants; each run starts from an
# empty table after a CHECKPOINT. autovacuum is off (an insert-only table
# would be vacuumed in the middle of some runs and not others).
#
# A listener consumes the notifications during every run (psql, LISTEN
# flagpost, polling every 0.2 s), as the broker's bridge would; the script
# checks that the "with" runs sent notifications and the "without" runs none.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
sql="$here/../../sql/postgres/flagpost.sql"
SECS=${SECS:-7}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-"1 8 32"}
FSYNC=${FSYNC:-on}
SYNC=${SYNC:-on}
SCRIPTS=${SCRIPTS:-"insert1.sql insert10.sql"}
LISTENER=${LISTENER:-1}
NOTIFY=${NOTIFY:-1}
WAL=${WAL:-1}
FLAGPOST=${FLAGPOST:-$here/../../target/release/flagpost}
walsql="$here/../../sql/postgres/flagpost-wal.sql"
if [ "$WAL" = 1 ] && [ ! -x "$FLAGPOST" ]; then
    echo "pgbench: no $FLAGPOST (cargo build --release -p flagpost-std --bin flagpost, or WAL=0)" >&2
    exit 1
fi
BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$BIN/pgbench" ] || {
    echo "pgbench: no PostgreSQL server binaries (set PG_BIN; ./test.sh installs PostgreSQL)" >&2
    exit 1
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/flagpost-pgbench.XXXXXX")
server=
listener=
# (a run is a subshell: the broker's and its listener's PIDs are in files)
stop_broker() {
    local pid
    for f in "$dir/wal-listener.pid" "$dir/broker.pid"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        rm -f "$f"
    done
}
cleanup() {
    stop_broker
    if [ -n "$listener" ]; then kill "$listener" 2>/dev/null || true; fi
    if [ -n "$server" ]; then
        kill -INT "$server" 2>/dev/null || true # fast shutdown
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_postgres=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    # setpriv execs the program (no fork): $! is the server's own PID
    as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

HOME=/tmp "${as_postgres[@]}" "$BIN/initdb" -D "$dir/data" -U flagpost --auth=trust \
    --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
HOME=/tmp "${as_postgres[@]}" "$BIN/postgres" -D "$dir/data" -p "$port" -k "$dir" \
    -c listen_addresses=127.0.0.1 -c fsync="$FSYNC" -c synchronous_commit="$SYNC" -c max_connections=60 \
    -c autovacuum=off -c max_wal_size=8GB -c checkpoint_timeout=1h \
    -c wal_level="$([ "$WAL" = 1 ] && echo logical || echo replica)" \
    </dev/null >"$dir/server.log" 2>&1 &
server=$!

export PGHOST=127.0.0.1 PGPORT=$port PGUSER=flagpost PGDATABASE=postgres
psql() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 600); do
    "$BIN/pg_isready" -q && break
    kill -0 "$server" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    sleep 0.1
done
"$BIN/pg_isready" -q || { echo "postgres not ready after 60 s" >&2; exit 1; }
if [ "$NOTIFY" = 1 ]; then
    psql -f "$sql"
else
    sed 's/pg_notify(/concat(/' "$sql" | psql
fi
if [ "$WAL" = 1 ]; then
    psql -f "$walsql"
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
metric() { # port name: the sample's value, empty if none
    curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null | sed -n "s/^$2 \([0-9]*\)$/\1/p"
}
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # user + system, in ticks
# starts the broker streaming the WAL from a fresh slot, and a listener
start_broker() {
    local mport out
    mport=$(free_port)
    "$FLAGPOST" serve --bind 127.0.0.1:0 --metrics "127.0.0.1:$mport" \
        --postgres "postgres://flagpost@127.0.0.1:$port/postgres" --postgres-mode wal \
        >"$dir/broker.out" 2>"$dir/broker.log" &
    broker=$!
    echo "$broker" >"$dir/broker.pid"
    broker_metrics=$mport
    for _ in $(seq 300); do
        out=$(sed -n 's/^listening on //p' "$dir/broker.out")
        [ -n "$out" ] && [ "$(metric "$mport" flagpost_postgres_connected)" = 1 ] && break
        kill -0 "$broker" 2>/dev/null || { cat "$dir/broker.log" >&2; stop_broker; return 1; }
        sleep 0.1
    done
    [ "$(metric "$mport" flagpost_postgres_connected)" = 1 ] ||
        { echo "pgbench: the broker did not start streaming" >&2; cat "$dir/broker.log" >&2; stop_broker; return 1; }
    "$FLAGPOST" listen --broker "$out" >"$dir/wal-listener.out" 2>/dev/null &
    echo $! >"$dir/wal-listener.pid"
}

touch "$dir/notifications"
if [ "$LISTENER" = 1 ]; then
    {
        echo "LISTEN flagpost;"
        while sleep 0.2; do echo "SELECT 1;"; done
    } | "$BIN/psql" -X -q >"$dir/notifications" 2>/dev/null &
    listener=$!
fi

notified() { grep -c '^Asynchronous notification "flagpost" with payload "status' "$dir/notifications" || true; }

# one run: prints commits/s (and, for WAL, " seconds-to-catch-up")
run() { # variant(ENABLE|DISABLE|WAL) clients script
    local jobs=$(($2 < 2 ? $2 : 2)) before out tps trigger=$1 txns start caught
    [ "$1" = WAL ] && trigger=DISABLE
    psql -c "ALTER TABLE messages $trigger TRIGGER flagpost_insert" \
        -c "ALTER TABLE messages DISABLE TRIGGER flagpost_truncate" \
        -c "TRUNCATE messages" -c "CHECKPOINT"
    if [ "$1" = WAL ]; then
        start_broker || return 1
        walsender=$(psql -At -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'flagpost'")
        cpu0=$(($(cpu "$walsender") + 0)) bcpu0=$(($(cpu "$(cat "$dir/broker.pid")") + 0))
    fi
    before=$(notified)
    out=$(timeout $((SECS + 60)) "$BIN/pgbench" -n -M prepared -c "$2" -j "$jobs" -T "$SECS" \
        -f "$here/$3" 2>&1) || { echo "$out" >&2; stop_broker; return 1; }
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    [ -n "$tps" ] || { echo "$out" >&2; stop_broker; return 1; }
    printf '%.0f' "$tps"
    if [ "$1" = WAL ]; then
        # every committed transaction read by the broker: how long after the end
        txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
        start=$(date +%s%N) caught=
        for _ in $(seq 1200); do
            if [ "$(metric "$broker_metrics" flagpost_postgres_wal_transactions_total)" -ge "$txns" ] 2>/dev/null; then
                caught=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
                break
            fi
            sleep 0.1
        done
        [ -n "$caught" ] || { echo "pgbench: the broker read $(metric "$broker_metrics" flagpost_postgres_wal_transactions_total) of $txns transactions in 120 s" >&2; stop_broker; return 1; }
        [ "$(metric "$broker_metrics" flagpost_postgres_delivered_total)" -gt 0 ] && [ -s "$dir/wal-listener.out" ] ||
            { echo "pgbench: the WAL source delivered nothing, or its listener heard nothing" >&2; stop_broker; return 1; }
        # CPU seconds per second of the run: the walsender's and the broker's
        printf ' %s %s %s' "$caught" \
            "$(awk -v a="$cpu0" -v b="$(cpu "$walsender")" -v t="$ticks" -v s="$SECS" 'BEGIN {printf "%.2f", (b - a) / t / s}')" \
            "$(awk -v a="$bcpu0" -v b="$(cpu "$(cat "$dir/broker.pid")")" -v t="$ticks" -v s="$SECS" 'BEGIN {printf "%.2f", (b - a) / t / s}')"
        stop_broker
        for _ in $(seq 100); do
            psql -c "SELECT pg_drop_replication_slot('flagpost') FROM pg_replication_slots WHERE slot_name = 'flagpost' AND NOT active" >/dev/null
            [ "$(psql -At -c "SELECT count(*) FROM pg_replication_slots")" = 0 ] && break
            sleep 0.1
        done
    fi
    [ -n "$listener" ] && [ "$NOTIFY" = 1 ] || return 0
    # the listener has had the run's notifications once a later one arrives
    local end="run-end-$(date +%s%N)"
    psql -c "NOTIFY flagpost, '$end'"
    for _ in $(seq 300); do grep -q "$end" "$dir/notifications" && break; sleep 0.1; done
    grep -q "$end" "$dir/notifications" || { echo "pgbench: the listener fell 30 s behind" >&2; return 1; }
    if [ "$1" = ENABLE ] && [ "$(notified)" -le "$before" ]; then
        echo "pgbench: the trigger sent nothing" >&2
        return 1
    fi
    if [ "$1" != ENABLE ] && [ "$(notified)" -ne "$before" ]; then
        echo "pgbench: notifications without the trigger" >&2
        return 1
    fi
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "# pgbench: commits/s without and with the Flagpost INSERT trigger$([ "$WAL" = 1 ] && echo ", and with the WAL source")"
echo
echo "- $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $("$BIN/postgres" --version); fsync=$FSYNC, synchronous_commit=$SYNC, wal_level=$([ "$WAL" = 1 ] && echo logical || echo replica); data on $(df -T "$dir" | awk 'NR == 2 {print $2}'); listener: $([ "$LISTENER" = 1 ] && echo "psql, LISTEN flagpost" || echo none); $([ "$NOTIFY" = 1 ] && echo "the trigger as shipped" || echo "NOTIFY=0: the trigger without pg_notify")"
echo "- $RUNS interleaved runs of $SECS s per cell, median; pgbench -n -M prepared -c N -j min(N,2) -T $SECS"
echo
if [ "$WAL" = 1 ]; then
    echo "| rows/commit | clients | without (commits/s) | with (commits/s) | with/without | WAL source (commits/s) | WAL/without | caught up after (s) | walsender CPU | broker CPU | runs without | runs with | runs WAL |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
else
    echo "| rows/commit | clients | without (commits/s) | with (commits/s) | with/without | runs without | runs with |"
    echo "|---:|---:|---:|---:|---:|---|---|"
fi
for script in $SCRIPTS; do
    rows=${script//[!0-9]/}
    for c in $CLIENTS; do
        without=() with=() wal=() lag=() wcpu=() bcpu=()
        for r in $(seq "$RUNS"); do
            # interleaved: without, with, WAL; then WAL, with, without; …
            if ((r % 2)); then order="DISABLE ENABLE WAL"; else order="WAL ENABLE DISABLE"; fi
            for v in $order; do
                case $v in
                DISABLE) without+=("$(run DISABLE "$c" "$script")") ;;
                ENABLE) with+=("$(run ENABLE "$c" "$script")") ;;
                WAL)
                    [ "$WAL" = 1 ] || continue
                    out=$(run WAL "$c" "$script")
                    read -r t l wc bc <<<"$out"
                    wal+=("$t") lag+=("$l") wcpu+=("$wc") bcpu+=("$bc")
                    ;;
                esac
            done
        done
        a=$(echo "${without[*]}" | median)
        b=$(echo "${with[*]}" | median)
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')
        if [ "$WAL" = 1 ]; then
            w=$(echo "${wal[*]}" | median)
            wratio=$(awk -v a="$a" -v b="$w" 'BEGIN {printf "%.2f", b / a}')
            echo "| $rows | $c | $a | $b | $ratio | $w | $wratio | $(echo "${lag[*]}" | tr ' ' '\n' | sort -n | tail -n 1) | $(echo "${wcpu[*]}" | median) | $(echo "${bcpu[*]}" | median) | ${without[*]} | ${with[*]} | ${wal[*]} |"
        else
            echo "| $rows | $c | $a | $b | $ratio | ${without[*]} | ${with[*]} |"
        fi
    done
done
