# Sourced by the scripts that run Python (python/test.sh,
# python/bench/run.sh, tests/browser/run.sh), from the repository's root:
# sets `target` (absolute CARGO_TARGET_DIR, exported) and `venv` (the shared
# venv in it, created if absent; Debian's python3-venv installed if the
# venv module is missing), and `pip_install PACKAGE…` into it.
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
export CARGO_TARGET_DIR=$target
venv=$target/venv
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv"; then
        # Debian: the venv module is its own package
        rm -rf "$venv"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    fi
fi
pip_install() {
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
