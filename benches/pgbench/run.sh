#!/usr/bin/env bash
# What NOTIFY costs the database. pgbench inserts into `messages` — one row
# per transaction (insert1.sql) and ten rows per transaction in one statement
# (insert10.sql) — at 1, 8 and 32 clients, with flagpost.sql's INSERT trigger
# disabled ("without") and enabled ("with"), and reports commits/s (pgbench's
# tps: each transaction is one commit), the median of RUNS runs of SECS
# seconds each, and the ratio with/without.
#
#   benches/pgbench/run.sh                     # ≈ 5 min; prints a Markdown table
#   SECS=10 RUNS=5 FSYNC=off CLIENTS="1 32" benches/pgbench/run.sh
#
# Settings (environment): SECS (7), RUNS (3), CLIENTS ("1 8 32"), SCRIPTS
# ("insert1.sql insert10.sql"), FSYNC (on), SYNC (synchronous_commit, on),
# and, to take the cost apart: LISTENER=0 (no listening connection) and
# NOTIFY=0 (the trigger computes its payloads as usual but does not send
# them: the cost of the trigger alone).
#
# Bounded: 2 scripts × |CLIENTS| × 2 variants × RUNS runs × SECS s (default
# 2×3×2×3×7 s = 252 s) plus ~1 s per run of TRUNCATE and CHECKPOINT, ≈ 5 min;
# each pgbench is also under `timeout` (SECS + 60 s).
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
BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$BIN/pgbench" ] || {
    echo "pgbench: no PostgreSQL server binaries (set PG_BIN; ./test.sh installs PostgreSQL)" >&2
    exit 1
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/flagpost-pgbench.XXXXXX")
server=
listener=
cleanup() {
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

touch "$dir/notifications"
if [ "$LISTENER" = 1 ]; then
    {
        echo "LISTEN flagpost;"
        while sleep 0.2; do echo "SELECT 1;"; done
    } | "$BIN/psql" -X -q >"$dir/notifications" 2>/dev/null &
    listener=$!
fi

notified() { grep -c '^Asynchronous notification "flagpost" with payload "status' "$dir/notifications" || true; }

# one run: prints commits/s
run() { # variant(ENABLE|DISABLE) clients script
    local jobs=$(($2 < 2 ? $2 : 2)) before out tps
    psql -c "ALTER TABLE messages $1 TRIGGER flagpost_insert" \
        -c "ALTER TABLE messages DISABLE TRIGGER flagpost_truncate" \
        -c "TRUNCATE messages" -c "CHECKPOINT"
    before=$(notified)
    out=$(timeout $((SECS + 60)) "$BIN/pgbench" -n -M prepared -c "$2" -j "$jobs" -T "$SECS" \
        -f "$here/$3" 2>&1) || { echo "$out" >&2; return 1; }
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    [ -n "$tps" ] || { echo "$out" >&2; return 1; }
    printf '%.0f' "$tps"
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
    if [ "$1" = DISABLE ] && [ "$(notified)" -ne "$before" ]; then
        echo "pgbench: notifications without the trigger" >&2
        return 1
    fi
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "# pgbench: commits/s without and with the Flagpost INSERT trigger"
echo
echo "- $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $("$BIN/postgres" --version); fsync=$FSYNC, synchronous_commit=$SYNC; data on $(df -T "$dir" | awk 'NR == 2 {print $2}'); listener: $([ "$LISTENER" = 1 ] && echo "psql, LISTEN flagpost" || echo none); $([ "$NOTIFY" = 1 ] && echo "the trigger as shipped" || echo "NOTIFY=0: the trigger without pg_notify")"
echo "- $RUNS interleaved runs of $SECS s per cell, median; pgbench -n -M prepared -c N -j min(N,2) -T $SECS"
echo
echo "| rows/commit | clients | without (commits/s) | with (commits/s) | with/without | runs without | runs with |"
echo "|---:|---:|---:|---:|---:|---|---|"
for script in $SCRIPTS; do
    rows=${script//[!0-9]/}
    for c in $CLIENTS; do
        without=() with=()
        for r in $(seq "$RUNS"); do
            if ((r % 2)); then
                without+=("$(run DISABLE "$c" "$script")")
                with+=("$(run ENABLE "$c" "$script")")
            else
                with+=("$(run ENABLE "$c" "$script")")
                without+=("$(run DISABLE "$c" "$script")")
            fi
        done
        a=$(echo "${without[*]}" | median)
        b=$(echo "${with[*]}" | median)
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')
        echo "| $rows | $c | $a | $b | $ratio | ${without[*]} | ${with[*]} |"
    done
done
