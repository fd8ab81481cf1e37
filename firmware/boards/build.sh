#!/usr/bin/env bash
# Builds both gateway boards in release (and the host tool config-block),
# then checks each board's ELF against the budget: flash (every section
# stored in flash: .vector_table, .boot2, .text, .rodata, .data's load
# image, …) ≤ 64 KiB; static RAM (.data, .bss, .uninit, … — everything
# allocated in RAM; the stacks come on top) ≤ 32 KiB.
# Prints a table every run; exits non-zero when a build fails or a limit is
# exceeded (then it also lists the largest symbols of the offending board).
#
#   firmware/boards/build.sh            # both boards
#   firmware/boards/build.sh nucleo-f767zi
#
# Installs what it needs, idempotently: the two rustup targets and, when
# `arm-none-eabi-size` is missing, Debian's binutils-arm-none-eabi.
# Build-time defaults pass through: FLAGPOST_BROKER=ip:port FLAGPOST_CHANNEL=name,
# and DEFMT_LOG overrides each board's .cargo/config.toml level.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# One target directory for both boards (host build scripts and proc macros
# are built once); the boards' .cargo/config.toml name the same one.
export CARGO_TARGET_DIR="$here/target"

FLASH_LIMIT=$((64 * 1024))
RAM_LIMIT=$((32 * 1024))

# board directory, target triple, binary name
boards=(
    "w5500-evb-pico thumbv6m-none-eabi flagpost-w5500-evb-pico"
    "nucleo-f767zi thumbv7em-none-eabihf flagpost-nucleo-f767zi"
)

if [ $# -gt 0 ]; then
    selected=()
    for want in "$@"; do
        found=""
        for b in "${boards[@]}"; do
            if [ "${b%% *}" = "$want" ]; then selected+=("$b"); found=1; fi
        done
        if [ -z "$found" ]; then
            echo "build.sh: unknown board '$want' (known: w5500-evb-pico nucleo-f767zi)" >&2
            exit 2
        fi
    done
    boards=("${selected[@]}")
fi

# --- tools -----------------------------------------------------------------
installed_targets="$(rustup target list --installed 2>/dev/null || true)"
for b in "${boards[@]}"; do
    read -r _ triple _ <<<"$b"
    if ! grep -qx "$triple" <<<"$installed_targets"; then
        rustup target add "$triple"
    fi
done

if ! command -v arm-none-eabi-size >/dev/null || ! command -v arm-none-eabi-objdump >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y binutils-arm-none-eabi >/dev/null 2>&1 ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y binutils-arm-none-eabi >/dev/null; }
fi

# --- build -----------------------------------------------------------------
for b in "${boards[@]}"; do
    read -r dir _ _ <<<"$b"
    echo "== building $dir (release)"
    (cd "$here/$dir" && cargo build --release)
done
# The host tool that writes the flash configuration block (same target
# directory, host triple: nothing clashes with the boards' artifacts).
echo "== building config-block (host tool)"
(cd "$here/config-block" && cargo build --release)

# --- sizes -----------------------------------------------------------------
# `objdump -h` lists every section with its VMA and flags. A section with
# ALLOC and LOAD has bytes in the image, i.e. in flash (.data's initial
# values included); an ALLOC section whose address is in RAM
# (0x2000_0000..0x4000_0000 on both chips) takes static RAM.
sizes() {
    arm-none-eabi-objdump -h "$1" | awk '
        /^ *[0-9]+ / { size = strtonum_hex($3); vma = $4; getline flags
            alloc = flags ~ /ALLOC/; load = flags ~ /LOAD/
            if (alloc && load) flash += size
            if (alloc && vma >= "20000000" && vma < "40000000") ram += size }
        function strtonum_hex(h,   i, c, n) { n = 0; h = tolower(h)
            for (i = 1; i <= length(h); i++) { c = index("0123456789abcdef", substr(h, i, 1)) - 1; n = n * 16 + c }
            return n }
        END { printf "%d %d\n", flash, ram }'
}

status=0
rows=()
over=()
for b in "${boards[@]}"; do
    read -r dir triple bin <<<"$b"
    elf="$CARGO_TARGET_DIR/$triple/release/$bin"
    read -r flash ram < <(sizes "$elf")
    verdict="ok"
    if [ "$flash" -gt "$FLASH_LIMIT" ] || [ "$ram" -gt "$RAM_LIMIT" ]; then
        verdict="OVER"
        status=1
        over+=("$elf")
    fi
    rows+=("$(printf '%-16s %8d %8d %6.1f%% %8d %8d %6.1f%%  %s' "$dir" "$flash" "$FLASH_LIMIT" \
        "$(awk "BEGIN{print 100*$flash/$FLASH_LIMIT}")" "$ram" "$RAM_LIMIT" \
        "$(awk "BEGIN{print 100*$ram/$RAM_LIMIT}")" "$verdict")")
done

echo
printf '%-16s %8s %8s %7s %8s %8s %7s  %s\n' board flash limit used ram limit used verdict
for r in "${rows[@]}"; do echo "$r"; done
echo "(flash: bytes stored in flash; ram: static .data + .bss + .uninit, stacks not included)"

for elf in "${over[@]}"; do
    echo
    echo "== largest symbols of $(basename "$elf") (size, type, name; t/T code, r/R read-only data, d/b RAM)"
    # (awk reads everything: `head` would end nm with SIGPIPE under pipefail)
    arm-none-eabi-nm --size-sort --reverse-sort -S -C "$elf" |
        awk 'NR <= 25 { printf "%8d %s %s\n", strtonum_hex($2), $3, substr($0, index($0, $4)) }
             function strtonum_hex(h,   i, n) { n = 0; h = tolower(h)
                 for (i = 1; i <= length(h); i++) n = n * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
                 return n }' | cut -c1-150
done

exit "$status"
