#!/usr/bin/env bash
# ffi/test.sh: the C ABI's checks (issue 17, point 1), run from the root
# test.sh on a fresh Debian 12 as root. Installs what it needs if missing
# (gcc, valgrind, python3 from apt; cbindgen from crates.io, pinned), then:
#   1. regenerates ffi/include/flagpost.h with cbindgen and fails on a diff;
#   2. builds flagpost-ffi once (debug, feature test-hooks) and the
#      `flagpost` command;
#   3. builds ffi/examples/wake.c and ffi/tests/test_ffi.c with
#      gcc -Wall -Wextra -Werror against libflagpost.so and libflagpost.a;
#   4. starts `flagpost serve --key-file` on loopback and runs the example
#      (in-process and against it) and the tests: shared, static, under
#      valgrind (no definite or indirect leak, no invalid access) and as an
#      AddressSanitizer + UBSan build.
# Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
LIB=$TARGET/debug
OUT=$TARGET/ffi-test
CBINDGEN_VERSION=0.29.0
STARTED=$SECONDS

step() { printf '\n== ffi: %s\n' "$*"; }

# ---- tools ----
missing=()
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]]; then
    step "cargo install cbindgen $CBINDGEN_VERSION"
    cargo install --locked cbindgen --version "$CBINDGEN_VERSION"
fi

# ---- header ----
mkdir -p "$OUT"
step "header: cbindgen output matches ffi/include/flagpost.h"
cbindgen --quiet --config ffi/cbindgen.toml --crate flagpost-ffi --output "$OUT/flagpost.h"
if ! diff -u ffi/include/flagpost.h "$OUT/flagpost.h"; then
    echo "ffi/include/flagpost.h is stale: regenerate it with" >&2
    echo "  cbindgen --config ffi/cbindgen.toml --crate flagpost-ffi --output ffi/include/flagpost.h" >&2
    exit 1
fi

# ---- build ----
step "cargo build -p flagpost-ffi --features test-hooks; -p flagpost-std --bin flagpost"
cargo build -q -p flagpost-ffi --features test-hooks
cargo build -q -p flagpost-std --bin flagpost
BUILT=$SECONDS

CFLAGS=(-std=c11 -Wall -Wextra -Werror -g -Iffi/include -DFLAGPOST_TEST_HOOKS)
SHARED=(-L"$LIB" -Wl,-rpath,"$LIB" -lflagpost -lpthread)
STATIC=("$LIB/libflagpost.a" -lpthread -ldl -lm)
step "gcc: example and tests, shared and static, and an ASan/UBSan build"
gcc "${CFLAGS[@]}" ffi/examples/wake.c "${SHARED[@]}" -o "$OUT/wake"
gcc "${CFLAGS[@]}" ffi/examples/wake.c "${STATIC[@]}" -o "$OUT/wake-static"
gcc "${CFLAGS[@]}" ffi/tests/test_ffi.c "${SHARED[@]}" -o "$OUT/test_ffi"
gcc "${CFLAGS[@]}" ffi/tests/test_ffi.c "${STATIC[@]}" -o "$OUT/test_ffi-static"
gcc "${CFLAGS[@]}" -fsanitize=address,undefined -fno-omit-frame-pointer \
    ffi/tests/test_ffi.c "${STATIC[@]}" -o "$OUT/test_ffi-asan"

# ---- a real broker, with a key ----
step "flagpost serve --key-file on loopback"
KEY=$OUT/broker.key
rm -f "$KEY"
"$LIB/flagpost" keygen "$KEY" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
"$LIB/flagpost" serve --bind "$ADDR" --key-file "$KEY" >"$OUT/serve.log" 2>&1 &
SERVE=$!
trap 'kill "$SERVE" 2>/dev/null; wait "$SERVE" 2>/dev/null || true' EXIT
deadline=$((SECONDS + 30))
until "$LIB/flagpost" ping --broker "$ADDR" --key-file "$KEY" >/dev/null 2>&1; do
    if ((SECONDS > deadline)) || ! kill -0 "$SERVE" 2>/dev/null; then
        echo "flagpost serve did not come up on $ADDR:" >&2
        cat "$OUT/serve.log" >&2
        exit 1
    fi
    sleep 0.1
done
export FLAGPOST_TEST_BROKER=$ADDR FLAGPOST_TEST_KEY_FILE=$KEY

# ---- run ----
step "example: wake (in-process broker, then flagpost serve; shared, static)"
"$OUT/wake"
"$OUT/wake-static" "$ADDR" "$KEY"

step "tests: shared library"
"$OUT/test_ffi"
step "tests: static library"
"$OUT/test_ffi-static"
step "tests: under valgrind"
valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=1 "$OUT/test_ffi"
step "tests: AddressSanitizer + UBSan (static library)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$OUT/test_ffi-asan"

step "all passed ($((SECONDS - BUILT)) s after the build, $((SECONDS - STARTED)) s in all)"
