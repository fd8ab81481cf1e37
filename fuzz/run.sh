#!/usr/bin/env bash
# Builds every fuzz target and runs each in turn for SECS seconds (default 30):
#
#   fuzz/run.sh [SECS]
#
# Each target runs on a scratch copy of its committed corpus (corpus/<target>),
# so a run never grows or rewrites the committed seeds. Prints the number of
# executions per target (from libFuzzer's closing "Done N runs in M second(s)")
# and exits non-zero if any target crashed, leaked, timed out or failed to
# build; the crashing input is kept under fuzz/artifacts/<target>/.
#
# Targets run one after another, one libFuzzer job each (no -jobs/-workers).
# Override the toolchain with FUZZ_TOOLCHAIN (default: +nightly).
set -uo pipefail

secs="${1:-30}"
case "$secs" in
'' | *[!0-9]* | 0)
	echo "usage: $0 [seconds-per-target (a positive integer, default 30)]" >&2
	exit 2
	;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
toolchain="${FUZZ_TOOLCHAIN:-+nightly}"

mapfile -t targets < <(cargo "$toolchain" fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "no fuzz targets found" >&2
	exit 1
fi

if ! cargo "$toolchain" fuzz build; then
	echo "fuzz build failed" >&2
	exit 1
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/flagpost-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

failed=()
summary=()
for t in "${targets[@]}"; do
	work="$scratch/corpus-$t"
	log="$scratch/$t.log"
	mkdir -p "$work"
	if [ -d "corpus/$t" ]; then
		cp -R "corpus/$t/." "$work/"
	fi
	seeds=$(find "$work" -type f | wc -l)
	echo "== $t: ${secs}s on a copy of corpus/$t ($seeds seeds)"
	cargo "$toolchain" fuzz run "$t" "$work" -- -max_total_time="$secs" >"$log" 2>&1
	rc=$?
	done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1)
	if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
		runs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/' <<<"$done_line")
		took=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/' <<<"$done_line")
		rate=$((runs / (took > 0 ? took : 1)))
		found=$(($(find "$work" -type f | wc -l) - seeds))
		line="$t: $runs executions in ${took}s (~$rate exec/s), $found new corpus inputs (discarded)"
	else
		failed+=("$t")
		line="$t: FAILED (exit $rc)"
		echo "--- last lines of the $t log:"
		tail -n 60 "$log"
		grep -E 'Test unit written to|artifact_prefix' "$log" | tail -n 2
	fi
	echo "$line"
	summary+=("$line")
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "crashed or failed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
	exit 1
fi
