#!/usr/bin/env bash
# The Python package's tests (issue 17, point 2): builds the `flagpost`
# binary (the brokers the tests start) and an abi3 wheel of python/ (debug
# build: the tests check behaviour, not speed), installs it into the shared
# venv ${CARGO_TARGET_DIR:-target}/venv with maturin, pytest and mypy (pinned),
# type-checks (mypy --strict) and runs python/tests. Idempotent; exits
# non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
. python/venv.sh
pip_install "maturin==1.16.0" "pytest==9.2.0" "mypy==2.4.1"

cargo build -p flagpost-std --bin flagpost
wheels=$target/wheels-py
rm -rf "$wheels"
"$venv/bin/maturin" build --manifest-path python/Cargo.toml \
    --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --force-reinstall --no-deps "$wheels"/flagpost-*.whl

# the stubs: the package, its tests, examples and benchmark type-check
(cd python && "$venv/bin/mypy" --strict --no-incremental flagpost tests examples bench)
FLAGPOST_BIN=$target/debug/flagpost "$venv/bin/python" -m pytest -q \
    -p no:cacheprovider python/tests
echo "python/test.sh: passed in $((SECONDS - started)) s"
