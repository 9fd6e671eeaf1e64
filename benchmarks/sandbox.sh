#!/usr/bin/env bash
# What the build's namespace costs: `multipack build` of a one-child app in bubblewrap's namespace
# (MULTIPACK_SANDBOX=bubblewrap), in multipack's own (MULTIPACK_SANDBOX=direct) and without one
# (MULTIPACK_SANDBOX=off), interleaved; the median wall time of each and what each namespace adds
# (budget: ≤ 20 ms added to a build); then the bare set-up: `bwrap … true` and `unshare -Urm true`
# against `true`.
# Run as root, both namespaces are multipack's own (root's builds never use bubblewrap, which would
# map the build onto root); benchmarks/rootless.sh compares root's and an ordinary user's.
# Usage: benchmarks/sandbox.sh [runs=15]    (MULTIPACK=path skips the release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-15}
source "$root/benchmarks/release-binary.sh"
work=$(mktemp -d /tmp/multipack-sandbox-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
# Root's builds run as an id that owns nothing; without namespaces it must pass through here.
chmod 711 "$work"
mkdir -p "$work/app" "$work/tmp" "$work/home" "$work/bp/bin"
printf '#!/bin/sh\necho Bench\n' > "$work/bp/bin/detect"
printf '#!/bin/sh\necho built > "$1/built.txt"\n' > "$work/bp/bin/compile"
chmod +x "$work/bp/bin/"*
echo "$work/bp" > "$work/app/.buildpacks"
echo "web: true" > "$work/app/Procfile"

python3 - "$MULTIPACK" "$work" "$runs" <<'PY'
import os, resource, statistics, subprocess, sys, time
binary, work, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = {"HOME": work + "/home", "XDG_CACHE_HOME": work + "/xdg", "TMPDIR": work + "/tmp",
        "PATH": "/usr/local/bin:/usr/bin:/bin"}
cpu = {}
def timed(argv, env, name=None):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if name:
        used = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
        cpu.setdefault(name, []).append(used)
    return wall
build = [binary, "build", work + "/app"]
cases = {name: dict(base, MULTIPACK_SANDBOX=name) for name in ["bubblewrap", "direct", "off"]}
times = {name: [] for name in cases}
for name, env in cases.items(): timed(build, env)  # warm the cache and the page cache
for _ in range(runs):
    for name, env in cases.items(): times[name].append(timed(build, env, name))
bwrap = ["bwrap", "--unshare-user", "--uid", "1000", "--gid", "1000", "--ro-bind", "/usr", "/usr",
         "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
         "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"]
alone = {"bwrap true": bwrap, "unshare true": ["unshare", "-Urm", "/bin/true"], "true": ["/bin/true"]}
alone = {name: [timed(argv, base) for _ in range(runs)] for name, argv in alone.items()}
median = {name: statistics.median(values) for name, values in {**times, **alone}.items()}
host = median["off"]
print(f"multipack build, no namespace             {host:8.1f} ms  (median of {runs})")
for name, label in [("bubblewrap", "bubblewrap"), ("direct", "direct (multipack's own)")]:
    # Each round's difference from the build without a namespace next to it, so that a load
    # that comes and goes on a shared machine weighs less than in a difference of medians.
    # The fastest runs' difference is the cost with the least of other people's work in it.
    added = statistics.median(a - b for a, b in zip(times[name], times["off"]))
    fastest = min(times[name]) - min(times["off"])
    print(f"multipack build, {label:25s}{median[name]:8.1f} ms  added {added:5.1f} ms"
          f" (fastest runs: {fastest:5.1f} ms; budget 20 ms)  ratio {median[name] / host:.2f}")
# CPU time (user + system, every process of the build) hardly depends on what else the machine runs.
# Not for bubblewrap: its PID namespace's processes are reaped inside it, and what they used never
# reaches this process's RUSAGE_CHILDREN.
host_cpu = statistics.median(cpu["off"])
for name in ["direct"]:
    added = statistics.median(a - b for a, b in zip(cpu[name], cpu["off"]))
    print(f"CPU time, {name:10s} {statistics.median(cpu[name]):6.1f} ms against {host_cpu:.1f} ms: added {added:5.1f} ms")
print(f"bwrap … true / unshare -Urm true / true   {median['bwrap true']:8.1f} ms / {median['unshare true']:.1f} ms"
      f" / {median['true']:.1f} ms")
PY
