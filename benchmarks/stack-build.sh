#!/usr/bin/env bash
# What building on a stack image costs once it is pulled (SPEC §18: a warm build adds ≤ 50 ms over
# --stack-root on the same unpacked root, with one manifest request for a tag and none for a
# digest; the namespace's set-up ≤ 20 ms). A small stack-like image (this machine's bash and its
# libraries, busybox, a real stack's top-level layout) is pushed to Debian's docker-registry on
# loopback and pulled once; then, interleaved, `multipack build` of a one-child app:
#   image      --stack-image 127.0.0.1:PORT/bench/stack:24-build (one HEAD request each)
#   pinned     --stack-image 127.0.0.1:PORT/bench/stack@sha256:… (no request)
#   root       --stack-root on the very directory the image was unpacked into
#   machine    --stack-root / (this machine's system, the same namespace's set-up)
#   off        MULTIPACK_SANDBOX=off (no namespace at all)
# It prints each one's median wall time, the per-round difference of image and pinned over root
# (and its ratio), the set-up of a namespace on the stack root over none, and the registry's
# requests of the last rounds.
# Usage: benchmarks/stack-build.sh [runs=15]    (MULTIPACK=path skips the release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-15}
for tool in docker-registry umoci skopeo busybox; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install docker-registry umoci skopeo busybox-static)" >&2; exit 1; }
done
source "$root/benchmarks/release-binary.sh"
source "$root/scripts/lib/registry.sh"
work=$(mktemp -d /tmp/multipack-stack-build-bench-XXXXXX)
# Root's builds without a namespace run as an id that owns nothing: it must reach the app.
chmod 755 "$work"
cleanup() {
    stop_registry
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# The image: a stack's top-level layout (bin, lib, lib64, sbin linked into usr), bash with the
# libraries ldd names, busybox for the tools.
umoci init --layout layout >/dev/null
umoci new --image layout:stack
umoci unpack --rootless --image layout:stack bundle >/dev/null
rootfs=bundle/rootfs
mkdir -p "$rootfs"/{usr/bin,usr/lib,usr/lib64,usr/sbin,etc,boot,home,media,mnt,opt,root,srv,var/tmp}
for link in bin lib lib64 sbin; do ln -s "usr/$link" "$rootfs/$link"; done
cp /bin/busybox "$rootfs/usr/bin/busybox"
for applet in $(busybox --list); do
    [[ $applet == busybox || $applet == bash ]] || ln -sf busybox "$rootfs/usr/bin/$applet"
done
cp "$(readlink -f /bin/bash)" "$rootfs/usr/bin/bash"
for library in $(ldd /bin/bash | grep -o '/[^ ]*'); do
    target="$rootfs/usr/${library#/}"
    target=${target/usr\/usr\//usr/}
    mkdir -p "$(dirname "$target")"
    cp "$(readlink -f "$library")" "$target"
done
printf 'ID=bench-stack\nVERSION_ID="24.04"\n' >"$rootfs/etc/os-release"
umoci repack --image layout:stack bundle
rm -rf bundle

start_registry "$work/storage"
port=$registry_port
skopeo copy --quiet --dest-tls-verify=false oci:layout:stack "docker://127.0.0.1:$port/bench/stack:24-build"

mkdir -p app tmp home bp/bin
printf '#!/bin/sh\necho Bench\n' >bp/bin/detect
printf '#!/bin/sh\necho built > "$1/built.txt"\n' >bp/bin/compile
chmod +x bp/bin/*
echo "$work/bp" >app/.buildpacks
echo "web: true" >app/Procfile

export HOME=$work/home XDG_CACHE_HOME=$work/xdg TMPDIR=$work/tmp PATH=/usr/local/bin:/usr/bin:/bin
pulled=$("$MULTIPACK" stack pull "127.0.0.1:$port/bench/stack:24-build" 2>&1)
unpacked=$(sed -n 's/.*Root: //p' <<<"$pulled" | tail -n 1)
digest=$(grep -o 'sha256:[0-9a-f]\{64\}' <<<"$pulled" | tail -n 1)
echo "image 127.0.0.1:$port/bench/stack:24-build ($digest), unpacked in $unpacked"

python3 - "$MULTIPACK" "$work" "$runs" "127.0.0.1:$port/bench/stack" "$digest" "$unpacked" <<'PY'
import os, statistics, subprocess, sys, time
binary, work, runs, image, digest, unpacked = sys.argv[1:4] + sys.argv[4:7]
runs = int(runs)
env = dict(os.environ)
build = [binary, "build", work + "/app"]
cases = {
    "image": (build + ["--stack-image", image + ":24-build"], env),
    "pinned": (build + ["--stack-image", image + "@" + digest], env),
    "root": (build + ["--stack-root", unpacked], env),
    "machine": (build + ["--stack-root", "/"], env),
    "off": (build + ["--stack-root", "/"], dict(env, MULTIPACK_SANDBOX="off")),
}
def timed(argv, environment):
    start = time.perf_counter()
    done = subprocess.run(argv, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return (time.perf_counter() - start) * 1000
times = {name: [] for name in cases}
for argv, environment in cases.values(): timed(argv, environment)  # warm caches
for _ in range(runs):
    for name, (argv, environment) in cases.items(): times[name].append(timed(argv, environment))
median = {name: statistics.median(values) for name, values in times.items()}
for name in cases:
    print(f"build, {name:8s} {median[name]:8.1f} ms  (median of {runs}; fastest {min(times[name]):.1f} ms)")
# Each round's difference from its own neighbour, so that load that comes and goes on a shared
# machine weighs less than in a difference of medians.
for name in ["image", "pinned"]:
    added = statistics.median(a - b for a, b in zip(times[name], times["root"]))
    print(f"{name} over --stack-root on the same root: added {added:5.1f} ms (budget 50 ms), "
          f"ratio {median[name] / median['root']:.2f}")
setup = statistics.median(a - b for a, b in zip(times["root"], times["off"]))
print(f"namespace on the stack root (with multipack's loader) over no namespace: {setup:5.1f} ms (budget 20 ms)")
PY
# What one more warm build asks the registry, for a tag and for a digest.
requests() { grep -o '"\(GET\|HEAD\) /v2/[^"]*"' registry.log || true; }
for reference in "127.0.0.1:$port/bench/stack:24-build" "127.0.0.1:$port/bench/stack@$digest"; do
    before=$(requests | wc -l)
    "$MULTIPACK" build "$work/app" --stack-image "$reference" >/dev/null 2>&1
    sleep 0.3
    echo "requests of a warm build on $reference: $(( $(requests | wc -l) - before ))"
    requests | tail -n +"$((before + 1))" | sed 's/^/  /'
done
