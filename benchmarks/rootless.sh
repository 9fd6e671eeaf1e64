#!/usr/bin/env bash
# What keeping root's files from a root-run local build costs (SPEC §15, "Not root, for real";
# §18: namespace set-up ≤ 20 ms). Run as root, with the unprivileged user multipack-test.
#
# 1. Set-up: `multipack build` of a one-child app, as root (multipack's own namespaces: the root
#    made as root, idmapped directories, a user namespace mapped from outside) and as
#    multipack-test (bubblewrap, and multipack's own), each against the same user's build without
#    namespaces, interleaved; the median of each round's difference.
# 2. Ownership on a real-sized tree, an app of 7,000 files (70 directories of 100) whose child
#    touches every file, built by root: without namespaces the tree is handed to the build's user
#    and back (two walks that chown every entry); in a namespace it is reached idmapped and walked
#    once after, for setuid bits. Timed in multipack (section 3 below: whole builds of this app
#    spend seconds copying it, which hides the walks on a shared machine); `chown -R` of the same
#    tree there and back beside it.
# Usage: benchmarks/rootless.sh [runs=11]    (MULTIPACK=path skips the release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-11}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
id -u multipack-test > /dev/null || { echo "needs the user multipack-test" >&2; exit 2; }
source "$root/benchmarks/release-binary.sh"
work=$(mktemp -d /tmp/multipack-rootless-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp "$MULTIPACK" "$work/multipack"
chmod 755 "$work/multipack"
mkdir -p "$work/bp/bin"
printf '#!/bin/sh\necho Bench\n' > "$work/bp/bin/detect"
# Touches every file of the app, so that each is the build's to write.
printf '#!/bin/sh\nfind "$1" -type f -exec touch {} +\necho built > "$1/built.txt"\n' > "$work/bp/bin/compile"
chmod -R a+rX "$work/bp"
chmod +x "$work/bp/bin/"*
for user in root multipack-test; do
  for app in small big; do
    mkdir -p "$work/$user/$app"
    echo "$work/bp" > "$work/$user/$app/.buildpacks"
    echo "web: true" > "$work/$user/$app/Procfile"
  done
  (cd "$work/$user/big" && for d in $(seq 1 70); do mkdir "d$d" && (cd "d$d" && seq 1 100 | xargs touch); done)
  mkdir -p "$work/$user/xdg" "$work/$user/tmp"
done
chown -R multipack-test: "$work/multipack-test"

python3 - "$work" "$runs" <<'PY'
import os, statistics, subprocess, sys, time
work, runs = sys.argv[1], int(sys.argv[2])
binary = work + "/multipack"
def env(user, sandbox):
    base = work + "/" + user
    e = {"HOME": base, "XDG_CACHE_HOME": base + "/xdg", "TMPDIR": base + "/tmp", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    if sandbox: e["MULTIPACK_SANDBOX"] = sandbox
    return e
def build(user, app, sandbox):
    argv = [binary, "build", f"{work}/{user}/{app}"]
    if user != "root":
        argv = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", "--"] + argv
    start = time.perf_counter()
    subprocess.run(argv, env=env(user, sandbox), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1000
cases = [("root", None), ("root", "off"), ("multipack-test", "bubblewrap"), ("multipack-test", "direct"),
         ("multipack-test", "off")]
for app in ["small"]:
    times = {case: [] for case in cases}
    for case in cases: build(case[0], app, case[1])  # warm the caches
    for _ in range(runs):
        for case in cases: times[case].append(build(case[0], app, case[1]))
    def added(a, b): return statistics.median(x - y for x, y in zip(times[a], times[b]))
    label = "one-child app"
    print(f"{label}: median wall time of `multipack build` (ms, {runs} interleaved runs)")
    for case in cases:
        print(f"  {case[0]:15s} {case[1] or 'default':11s} {statistics.median(times[case]):8.1f}")
    t = ("multipack-test", "off")
    print(f"  root, namespaces (made as root, idmapped) - multipack-test without: {added(('root', None), t):6.1f}")
    print(f"  multipack-test, bubblewrap - without:                              {added(('multipack-test', 'bubblewrap'), t):6.1f}")
    print(f"  multipack-test, multipack's own - without:                         {added(('multipack-test', 'direct'), t):6.1f}")
    print(f"  root without namespaces (handover there and back) - multipack-test without: {added(('root', 'off'), t):6.1f}")
PY

#    The handover and hand-back themselves are timed by strace between the marker
#    the build writes before handing over (.handed-over) and the stages' exec, and between the
#    stages' exit and the marker's removal after handing back (strace stops on those calls only).
for sandbox in default off; do
  trace="$work/trace-$sandbox"
  env -i PATH=/usr/bin:/bin HOME="$work/root" XDG_CACHE_HOME="$work/root/xdg" TMPDIR="$work/root/tmp" \
    $( [ $sandbox = off ] && echo MULTIPACK_SANDBOX=off ) \
    strace -f --seccomp-bpf -qq -e trace=rename,unlink,execve,exit_group -e signal=none -tt -o "$trace" \
    "$work/multipack" build "$work/root/big" > /dev/null 2>&1
  python3 - "$trace" "$sandbox" <<'PY'
import re, sys
def seconds(stamp):
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)
marker = execed = exited = removed = None
stages = None
for line in open(sys.argv[1]):
    match = re.match(r"(\d+) +(\d+:\d+:\d+\.\d+) (.*)", line)
    if not match: continue
    pid, stamp, call = match.groups()
    t = seconds(stamp)
    if call.startswith("rename(") and call.split(", ")[1].startswith('"') and '/.handed-over"' in call.split(", ")[1]:
        marker = t
    elif call.startswith("execve(") and '"stages"' in call and marker is not None and execed is None:
        execed, stages = t, pid
    elif call.startswith("exit_group(") and pid == stages:
        exited = t
    elif call.startswith("unlink(") and call.split(")")[0].endswith('/.handed-over"') and exited is not None:
        removed = t
name = {"default": "root, namespaces (idmapped)", "off": "root, no namespaces (handed over)"}[sys.argv[2]]
if None in (marker, execed, exited, removed):
    print(f"{name}: marks not found"); sys.exit(0)
print(f"{name}: marker to the stages' exec {1000 * (execed - marker):6.1f} ms (set-up, and the handover), "
      f"stages' exit to the marker's removal {1000 * (removed - exited):6.1f} ms (the walk back)")
PY
done

tree="$work/root/big"
start=$(date +%s%N); chown -R 65533:65533 "$tree"; middle=$(date +%s%N); chown -R 0:0 "$tree"; end=$(date +%s%N)
echo "chown -R of the 7,000-file tree: $(( (middle - start) / 1000000 )) ms there, $(( (end - middle) / 1000000 )) ms back"
