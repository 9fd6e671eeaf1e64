#!/usr/bin/env bash
# Cold pull + unpack of a ~500 MB image from a loopback registry (SPEC §18): `multipack stack
# pull` against `skopeo copy` + `umoci unpack --rootless` of the same image from the same
# registry, interleaved, with wall times, their ratio (budget ≤ 1.0×) and each side's peak memory
# (budget ≤ 64 MB for multipack). The image is made with umoci from parts of this machine's /usr
# and /etc, in three layers (the last one deleting files, so whiteouts are applied too), and kept
# in WORK_DIR for the next run.
# Usage: benchmarks/stack-pull.sh [MULTIPACK_BINARY] [WORK_DIR]   (RUNS=N: 5 unless set)
set -euo pipefail

bin=${1:-.build/release/multipack}
work=${2:-$(mktemp -d /tmp/multipack-bench-stack.XXXXXX)}
runs=${RUNS:-5}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
for tool in docker-registry umoci skopeo /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install docker-registry umoci skopeo time)" >&2; exit 1; }
done
source "$(dirname "$0")/../scripts/lib/registry.sh"
mkdir -p "$work"
cd "$work"

cleanup() {
    stop_registry
    rm -rf "$work"/mp-cache-* "$work"/ref-* "$work/bundle"
}
trap cleanup EXIT

if [[ ! -f layout/index.json ]]; then
    echo "Making a ~500 MB image of three layers in $work/layout (once)"
    umoci init --layout layout
    umoci new --image layout:big
    layer() {
        rm -rf bundle
        umoci unpack --rootless --image layout:big bundle >/dev/null
        "$@"
        umoci repack --image layout:big bundle
        rm -rf bundle
    }
    copy() {
        for path in "$@"; do
            mkdir -p "bundle/rootfs$(dirname "$path")"
            cp -a "$path" "bundle/rootfs$(dirname "$path")/"
        done
    }
    layer copy /etc /usr/bin /usr/lib/python3.11
    layer copy /usr/include /usr/lib/git-core /usr/share/perl
    layer eval 'rm -rf bundle/rootfs/usr/lib/python3.11/test bundle/rootfs/etc/ssh; echo "ID=bench" >bundle/rootfs/etc/os-release'
    umoci config --image layout:big --config.env PATH=/usr/bin:/bin
fi
umoci stat --image layout:big | sed 's/^/  /'

start_registry "$work/registry" quiet
image=127.0.0.1:$registry_port/bench/big:1
skopeo copy --quiet --dest-tls-verify=false oci:layout:big "docker://$image"

# Prints "SECONDS PEAK_RSS_KB" for one command.
measure() {
    /usr/bin/time -f "%e %M" -o time.out "$@" >/dev/null 2>cmd.err || { cat cmd.err >&2; exit 1; }
    tail -1 time.out
}

# Each run writes into directories of its own, all removed at the end: on a file system mounted
# with `discard`, removing 500 MB slows what is written in the minutes after, whichever side it is.
multipack_run() {
    XDG_CACHE_HOME=$work/mp-cache-$1 measure "$bin" stack pull "$image"
}

reference_run() {
    read -r t1 m1 < <(measure skopeo copy --quiet --src-tls-verify=false "docker://$image" "oci:ref-$1:big")
    read -r t2 m2 < <(measure umoci unpack --rootless --image "ref-$1:big" "ref-bundle-$1")
    echo "$(echo "$t1 + $t2" | bc) $((m1 > m2 ? m1 : m2)) $t1 $t2"
}

mp_times=() ref_times=() ratios=() mp_peak=0 ref_peak=0
for run in $(seq "$runs"); do
    # Interleaved, the order swapped every run, so neither side always gets the warmer cache.
    if ((run % 2)); then order="mp ref"; else order="ref mp"; fi
    for side in $order; do
        sync
        if [[ $side == mp ]]; then
            read -r t m < <(multipack_run "$run")
            mp_times+=("$t")
            ((m > mp_peak)) && mp_peak=$m
            printf '  run %d  multipack stack pull              %6.2f s  %4d MB\n' "$run" "$t" $((m / 1024))
        else
            read -r t m t1 t2 < <(reference_run "$run")
            ref_times+=("$t")
            ((m > ref_peak)) && ref_peak=$m
            printf '  run %d  skopeo copy + umoci unpack        %6.2f s  %4d MB  (%.2f + %.2f)\n' \
                "$run" "$t" $((m / 1024)) "$t1" "$t2"
        fi
    done
    # Each run's pair ran back to back, so its ratio is the least hurt by what else the machine does.
    ratios+=("$(echo "scale=3; ${mp_times[-1]} / ${ref_times[-1]}" | bc)")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mp=$(median "${mp_times[@]}")
ref=$(median "${ref_times[@]}")
size=$(du -sh layout/blobs | cut -f1)
unpacked=$(du -sh mp-cache-1/multipack/stacks/roots | cut -f1)
echo
echo "Image: $size of blobs in the layout (compressed); unpacked: $unpacked on disk"
echo "Median of $runs cold pulls + unpacks: multipack $mp s, skopeo + umoci $ref s"
echo "Ratio of the medians: $(echo "scale=2; $mp / $ref" | bc)×; median of the runs' ratios: $(median "${ratios[@]}")× (budget ≤ 1.0×)"
echo "Peak memory: multipack $((mp_peak / 1024)) MB (budget ≤ 64 MB), skopeo/umoci $((ref_peak / 1024)) MB"
