#!/usr/bin/env bash
# Builds the text-parser fuzzer (.buildpacks, release YAML, masking) with libFuzzer + ASan and runs it.
# Usage: scripts/fuzz/run-text.sh [libFuzzer options...], e.g. -max_total_time=600
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.build-fuzz
mkdir -p "$out/corpus-text"
# The file helpers call into CMultipackSpawn (renameat2, mkostemp): its C is built and linked in.
printf 'module CMultipackSpawn {\n    header "%s/Sources/CMultipackSpawn/include/CMultipackSpawn.h"\n    export *\n}\n' \
    "$PWD" >"$out/CMultipackSpawn.modulemap"
clang -c -O1 -ISources/CMultipackSpawn/include Sources/CMultipackSpawn/spawn.c -o "$out/spawn.o"
# The file helpers' cleanup (partial files, the sweep) reads directories with the archive code's.
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name MultipackKit \
    -Xcc -fmodule-map-file=Sources/CMultipackYaml/module.modulemap \
    -Xcc -fmodule-map-file=Sources/CMultipackZlib/module.modulemap \
    -Xcc -fmodule-map-file=Sources/CMultipackLzma/module.modulemap \
    -Xcc -fmodule-map-file="$out/CMultipackSpawn.modulemap" "$out/spawn.o" scripts/fuzz/FuzzStubs.swift \
    Sources/MultipackKit/Release/LibYAML.swift Sources/MultipackKit/List/BuildpackList.swift Sources/MultipackKit/Log/Masking.swift \
    Sources/MultipackKit/Release/YAML.swift Sources/MultipackKit/Release/Release.swift \
    Sources/MultipackKit/Support/MultipackError.swift Sources/MultipackKit/Support/Files.swift \
    Sources/MultipackKit/Support/Parallel.swift Sources/MultipackKit/Support/ScratchDirectory.swift \
    Sources/MultipackKit/Archive/*.swift \
    Sources/MultipackKit/Support/TreeCopy.swift Sources/MultipackKit/Support/HiddenVariables.swift \
    scripts/fuzz/FuzzTextParsers.swift \
    -o "$out/fuzz-text"
if [[ -z $(ls -A "$out/corpus-text") ]]; then
    cp fixtures/apps/python-node/.buildpacks "$out/corpus-text/buildpacks"
    printf '\xef\xbb\xbf# c\r\nhttps://u:p@h/x.git#main # c\r\nheroku/python\nhttps://h/a.tgz?t=1 sha256=%064d\n' 0 >"$out/corpus-text/crlf"
    for bp in fixtures/buildpacks/*/bin/release; do bash "$bp" >"$out/corpus-text/release-$(basename "$(dirname "$(dirname "$bp")")")" || true; done
    printf -- '---\naddons: [a, "b"]\nconfig_vars: {A: "1", B: x}\ndefault_process_types:\n  web: >\n    a\n    b\n' >"$out/corpus-text/flow"
fi
# Deep and aliased YAML: nesting past the depth bound, aliases near the expansion bound.
if [[ ! -e "$out/corpus-text/deep-flow" ]]; then
    printf 'config_vars: %s\n' "$(printf '[%.0s' {1..100})" >"$out/corpus-text/deep-flow"
    for i in $(seq 0 80); do printf '%*sk%d:\n' "$i" '' "$i"; done >"$out/corpus-text/deep-block"
    printf 'a: &a [x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\nconfig_vars: {A: &v s, B: *v}\n' >"$out/corpus-text/aliases"
fi
export SWIFT_BACKTRACE=enable=no
exec "$out/fuzz-text" -max_len=4096 "$@" "$out/corpus-text"
