#!/usr/bin/env bash
# The dashboard in a real browser: headless Chromium driven by Selenium
# (WebDriver, Debian's chromium-driver) against a real `flagpost serve`.
# Installs what it needs (apt: chromium, chromium-driver, python3-venv; pip:
# selenium and pytest into the shared venv), then runs
# tests/browser/test_dashboard.py. The screenshot lands in
# $CARGO_TARGET_DIR/browser/dashboard.png; with FLAGPOST_SCREENSHOT=docs it
# replaces docs/dashboard.png (the README's).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
. python/venv.sh
pip_install selenium==4.38.0 pytest==9.2.0

cargo build -q -p flagpost-std --bin flagpost
FLAGPOST_BIN="$target/debug/flagpost" "$venv/bin/python" -m pytest -q -s -p no:cacheprovider tests/browser
