#!/usr/bin/env bash
# Times `multipack extract` against GNU tar on a ~200 MB mixed tree, as .tar.gz and .tar.xz.
# Usage: benchmarks/extract.sh [MULTIPACK_BINARY] [WORK_DIR]
# The binary needs the hidden verb `multipack extract ARCHIVE DEST`.
set -euo pipefail

bin=${1:-.build/release/multipack}
work=${2:-$(mktemp -d /tmp/multipack-bench.XXXXXX)}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir -p "$work"
cd "$work"

if [[ ! -d tree ]]; then
    echo "Generating a ~200 MB tree in $work/tree"
    mkdir -p tree
    # Compressible text: many small and some large files.
    for d in $(seq 1 40); do
        mkdir -p "tree/src$d/lib"
        for f in $(seq 1 50); do
            seq $((d * f)) $((d * f + 400)) | sed 's/$/ lorem ipsum dolor sit amet/' >"tree/src$d/lib/f$f.txt"
        done
    done
    for i in $(seq 1 6); do
        # yes dies of SIGPIPE when head has enough; that is the point, not a failure.
        yes "the quick brown fox jumps over the lazy dog $i" | head -c 20000000 >"tree/big$i.log" || true
    done
    # Incompressible data: a fifth of the bytes, roughly.
    for i in $(seq 1 4); do head -c 10000000 /dev/urandom >"tree/blob$i.bin"; done
    printf '#!/bin/sh\necho hi\n' >tree/run.sh && chmod 755 tree/run.sh
    du -sh tree
fi
[[ -f tree.tar.gz ]] || tar czf tree.tar.gz -C tree .
[[ -f tree.tar.xz ]] || tar cJf tree.tar.xz -C tree .
ls -l tree.tar.gz tree.tar.xz

# Prints "SECONDS PEAK_RSS_KB" for one extraction into a fresh directory.
measure() {
    rm -rf out && mkdir out
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f "%e %M" -o time.out "$@" >/dev/null
        tail -1 time.out
    else
        local start end
        start=$(date +%s.%N)
        "$@" >/dev/null
        end=$(date +%s.%N)
        echo "$(echo "$end - $start" | bc) ?"
    fi
}

# Best of three, to keep page-cache noise out.
best() {
    local best_t="" best_m=""
    for _ in 1 2 3; do
        read -r t m < <(measure "$@")
        if [[ -z $best_t ]] || (($(echo "$t < $best_t" | bc))); then best_t=$t best_m=$m; fi
    done
    echo "$best_t $best_m"
}

printf '%-8s %10s %10s %8s %12s %12s\n' format tar_s ours_s ratio tar_rss_kb ours_rss_kb
for fmt in gz xz; do
    flag=z
    [[ $fmt == xz ]] && flag=J
    read -r tt tm < <(best tar x${flag}f "tree.tar.$fmt" -C out)
    read -r ot om < <(best "$bin" extract "tree.tar.$fmt" out)
    diff -r tree out >/dev/null || { echo "extracted tree differs from the source" >&2; exit 1; }
    printf '%-8s %10s %10s %8s %12s %12s\n' "tar.$fmt" "$tt" "$ot" "$(echo "scale=2; $ot / $tt" | bc)" "$tm" "$om"
done
