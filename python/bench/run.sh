#!/usr/bin/env bash
# Same-run notify→wake latency, Python vs Rust (python/bench/latency.py):
# builds the release `flagpost` binary and a release wheel, installs it into
# the shared venv ${CARGO_TARGET_DIR:-target}/venv (python/test.sh puts its
# debug wheel back) and runs the benchmark. Arguments go to latency.py
# (e.g. --rounds 20000).
set -euo pipefail
cd "$(dirname "$0")/../.."
. python/venv.sh
pip_install "maturin==1.16.0"
cargo build --release -p flagpost-std --bin flagpost
wheels=$target/wheels-py-release
rm -rf "$wheels"
"$venv/bin/maturin" build --release --features bench --manifest-path python/Cargo.toml \
    --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --force-reinstall --no-deps "$wheels"/flagpost-*.whl
exec "$venv/bin/python" python/bench/latency.py --flagpost "$target/release/flagpost" "$@"
