#!/usr/bin/env bash
# Builds the tar-reader fuzzer (libFuzzer + AddressSanitizer) and runs it.
# Usage: scripts/fuzz/run.sh [libFuzzer options...], e.g. scripts/fuzz/run.sh -max_total_time=120
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.build-fuzz
mkdir -p "$out/corpus"
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name MultipackKit \
    -Xcc -fmodule-map-file=Sources/CMultipackZlib/module.modulemap \
    -Xcc -fmodule-map-file=Sources/CMultipackLzma/module.modulemap \
    Sources/MultipackKit/Archive/*.swift scripts/fuzz/FuzzStubs.swift scripts/fuzz/FuzzTarReader.swift \
    -o "$out/fuzz-tar"
# Seeds: small real archives in each format.
if [[ -z $(ls -A "$out/corpus") ]]; then
    seed=$(mktemp -d)
    mkdir -p "$seed/t/bin" && echo hi >"$seed/t/bin/detect" && ln -s detect "$seed/t/bin/l"
    long=$(printf 'n%.0s' {1..120})
    echo x >"$seed/t/$long"
    tar cf "$out/corpus/gnu.tar" -C "$seed" t
    tar --format=pax -cf "$out/corpus/pax.tar" -C "$seed" t
    gzip -c "$out/corpus/gnu.tar" >"$out/corpus/gnu.tar.gz"
    xz -c "$out/corpus/pax.tar" >"$out/corpus/pax.tar.xz"
    rm -rf "$seed"
fi
# Deep paths (past the 256-component bound), a deep symlink target and a symlink loop.
if [[ ! -e "$out/corpus/deep.tar" ]]; then
    seed=$(mktemp -d)
    deep=$(printf 'd/%.0s' {1..300})
    mkdir -p "$seed/$deep" && echo x >"$seed/${deep}f"
    ln -s "$(printf 'x/%.0s' {1..300})y" "$seed/d/far"
    ln -s b "$seed/a" && ln -s a "$seed/b"
    tar --format=pax --no-recursion -cf "$out/corpus/deep.tar" -C "$seed" "${deep}f" d/far a b
    gzip -c "$out/corpus/deep.tar" >"$out/corpus/deep.tar.gz"
    rm -rf "$seed"
fi
# Swift's own crash backtracer fights ASan for the crash; libFuzzer reports it better.
export SWIFT_BACKTRACE=enable=no
exec "$out/fuzz-tar" -max_len=65536 "$@" "$out/corpus"
