#!/usr/bin/env bash
# Builds both gateway boards in release (and the host tool config-block),
# then checks each board's ELF against the budget:
#   flash (every section stored in flash: .vector_table, .boot2, .text,
#     .rodata, .data's load image, …)                         ≤ 96 KiB
#   static RAM (.data, .bss, .uninit, … — everything allocated in RAM;
#     the stacks come on top)                                  ≤ 32 KiB
#   Flagpost's own share of the flash (below)                  ≤ 24 KiB
# and reports what signing costs.
# Prints two tables every run; exits non-zero when a build fails or a limit
# is exceeded (then it also lists the largest symbols of the offending board,
# or of Flagpost's share).
#
# Flagpost's share: the flash bytes (code, read-only data, .data's initial
# values) of the ELF's symbols whose demangled name is Flagpost's — it names
# flagpost_core::, flagpost_embedded:: or flagpost_firmware:: as its path,
# as its impl's self type, or in a generic argument:
#   flagpost_firmware::urc::parse_stored
#   <flagpost_core::auth::Key as flagpost_core::notifier::Signer>::sign
#   core::ptr::drop_in_place::<flagpost_core::auth::Key>
#   <embassy_futures::join::Join3<flagpost_firmware::app::modem_loop<…>…> as Future>::poll
# The trait of `<Type as Trait>` does not count: the board's
# `<Board as flagpost_firmware::app::Hooks>::…` is board code. The boards
# use v0 symbol mangling (.cargo/config.toml) so that generic arguments
# appear in names at all. Under LTO the figure means "bytes of the symbols
# named after Flagpost's crates": other crates' code inlined into them
# (embassy-net socket calls, core::slice) counts, Flagpost code inlined into
# another crate's symbol does not, nor do the instruction sequences the
# Cortex-M7 outliner shares (OUTLINED_FUNCTION_*). A body that identical-code
# folding shares between names counts once, as Flagpost's if any name is.
# hmac/sha2: symbols named after the RustCrypto crates (sha2, hmac, digest,
# block_buffer, crypto_common, ctutils, cmov, hybrid_array) and not
# Flagpost's. others: the rest of the flash, unnamed bytes included.
#
# What signing costs: each board is built twice, without its `sign` feature
# (`--no-default-features`: no HMAC-SHA-256 key is ever built, so LTO drops
# it all) and as shipped; the difference in flash and RAM is the cost,
# inlining included. The second build reuses every dependency: seconds.
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

FLASH_LIMIT=$((96 * 1024))
RAM_LIMIT=$((32 * 1024))
SHARE_LIMIT=$((24 * 1024))   # Flagpost's own share of the flash

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

# --- measuring ---------------------------------------------------------------
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

# Who the flash belongs to, by symbol name (the rule is in the header).
# Reads `nm --size-sort --reverse-sort -S -C` (address, size, type, name);
# prints "flagpost hmac_sha2" in bytes, or with -v list=N the N largest of
# Flagpost's symbols instead. Plain POSIX awk (Debian's mawk: no strtonum).
# shellcheck disable=SC2016 # an awk program, not shell
owners_awk='
    function hex(h,   i, n) { n = 0; h = tolower(h)
        for (i = 1; i <= length(h); i++) n = n * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
        return n }
    # The name without the trait of each `<Type as Trait>`: the code is the
    # type'"'"'s (or its generic arguments'"'"'), not the trait'"'"'s crate.
    function owner(s,   out, i, n, c, skip, depth) {
        out = ""; skip = 0; depth = 0; n = length(s)
        for (i = 1; i <= n; i++) {
            c = substr(s, i, 1)
            if (substr(s, i, 2) == "->") { if (!skip) out = out "->"; i++; continue }
            if (skip) {
                if (c == "<") depth++
                else if (c == ">") { if (depth == 0) { skip = 0; out = out c } else depth-- }
                continue
            }
            if (substr(s, i, 4) == " as ") { skip = 1; depth = 0; i += 3; continue }
            out = out c
        }
        return out }
    # code, read-only data, initialised data (its initial values are flashed)
    $3 ~ /^[tTrRdD]$/ {
        addr = $1; size = hex($2)
        name = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
        o = " " owner(name)
        fp = o ~ /[^A-Za-z0-9_]flagpost_(core|embedded|firmware)::/
        cr = o ~ /[^A-Za-z0-9_](sha2|hmac|digest|block_buffer|crypto_common|ctutils|cmov|hybrid_array)::/
        # identical-code folding gives one body several names: count it once
        if (!(addr in sz) || size > sz[addr]) sz[addr] = size
        if (fp) flagpost[addr] = 1
        if (cr) crypto[addr] = 1
        if (fp && list > 0 && shown < list && !(addr in listed)) {
            listed[addr] = 1; shown++; printf "%8d %s %s\n", size, $3, name }
    }
    END { if (list > 0) exit
        for (a in sz) { if (a in flagpost) f += sz[a]; else if (a in crypto) c += sz[a] }
        printf "%d %d\n", f, c }'

owners() {
    arm-none-eabi-nm --size-sort --reverse-sort -S -C "$1" | awk -v list="${2:-0}" "$owners_awk"
}

# The share needs the boards' v0 symbol names (.cargo/config.toml): legacy
# names hide generic arguments. A RUSTFLAGS variable replaces the flags of
# .cargo/config.toml (the sizes change too: sha2's compact backend is one of
# them), so say so rather than print a wrong figure.
legacy_names() {
    arm-none-eabi-nm "$1" | awk '/ _ZN[0-9]+flagpost_(core|embedded|firmware)/ { n++ } END { print n + 0 }'
}

# --- build -----------------------------------------------------------------
# Each board twice: without signing first (only its sizes are kept), then as
# shipped, so the ELF left in the target directory is the real one. The
# second build reuses every dependency; a rerun rebuilds nothing.
declare -A unsigned_flash unsigned_ram
for b in "${boards[@]}"; do
    read -r dir triple bin <<<"$b"
    echo "== building $dir (release, without signing, to measure what it costs)"
    (cd "$here/$dir" && cargo build --release --no-default-features)
    read -r "unsigned_flash[$dir]" "unsigned_ram[$dir]" < <(sizes "$CARGO_TARGET_DIR/$triple/release/$bin")
    echo "== building $dir (release)"
    (cd "$here/$dir" && cargo build --release)
done
# The host tool that writes the flash configuration block (same target
# directory, host triple: nothing clashes with the boards' artifacts).
echo "== building config-block (host tool)"
(cd "$here/config-block" && cargo build --release)

# --- check -----------------------------------------------------------------
pct() { awk "BEGIN { printf \"%.1f%%\", 100 * $1 / $2 }"; }

status=0
budget_rows=()
share_rows=()
over=()
share_over=()
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
    budget_rows+=("$(printf '%-16s %8d %8d %7s %8d %8d %7s  %s' "$dir" "$flash" "$FLASH_LIMIT" \
        "$(pct "$flash" "$FLASH_LIMIT")" "$ram" "$RAM_LIMIT" "$(pct "$ram" "$RAM_LIMIT")" "$verdict")")

    if [ "$(legacy_names "$elf")" -gt 0 ]; then
        echo "build.sh: $bin has legacy symbol names, so Flagpost's share cannot be attributed;" >&2
        echo "  is RUSTFLAGS set? It replaces the rustflags of $dir/.cargo/config.toml" >&2
        echo "  (v0 symbol names, sha2's compact SHA-256)" >&2
        status=1
        continue
    fi
    read -r share crypto < <(owners "$elf")
    others=$((flash - share - crypto))
    sign_flash=$((flash - unsigned_flash[$dir]))
    sign_ram=$((ram - unsigned_ram[$dir]))
    verdict="ok"
    if [ "$share" -gt "$SHARE_LIMIT" ]; then
        verdict="OVER"
        status=1
        share_over+=("$elf")
    fi
    share_rows+=("$(printf '%-16s %8d %8d %8d %7s %9d %8d %9d %9d  %s' "$dir" "$flash" "$share" "$SHARE_LIMIT" \
        "$(pct "$share" "$SHARE_LIMIT")" "$crypto" "$others" "$sign_flash" "$sign_ram" "$verdict")")
done

echo
printf '%-16s %8s %8s %7s %8s %8s %7s  %s\n' board flash limit used ram limit used verdict
for r in "${budget_rows[@]}"; do echo "$r"; done
echo "(flash: bytes stored in flash; ram: static .data + .bss + .uninit, stacks not included)"

if [ "${#share_rows[@]}" -gt 0 ]; then
    echo
    printf '%-16s %8s %8s %8s %7s %9s %8s %9s %9s  %s\n' board flash Flagpost limit used hmac/sha2 others \
        sign:flash sign:ram verdict
    for r in "${share_rows[@]}"; do echo "$r"; done
    echo "(Flagpost: flash bytes of the symbols named in flagpost-core, -embedded, -firmware, their"
    echo " impls and generics instantiated for their types, after LTO and inlining; hmac/sha2: symbols"
    echo " of the RustCrypto crates; others: the rest, unnamed bytes included; sign: this build minus"
    echo " the same board built without its \`sign\` feature, in bytes of flash and of static RAM)"
fi

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
for elf in "${share_over[@]}"; do
    echo
    echo "== largest of Flagpost's symbols in $(basename "$elf") (size, type, name)"
    owners "$elf" 25 | cut -c1-150
done

exit "$status"
