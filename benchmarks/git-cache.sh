#!/usr/bin/env bash
# What checking a cached git checkout against its commit costs (SPEC §5): one child the size of a
# real buildpack (FILES files, ~5 KB each on average, in directories of 20, a few executables and
# symlinks), built cold, then warm RUNS times: the warm compile's wall and CPU time (getrusage of
# it and all it started) and the child's fetch time from the report (read, hashed as git blobs,
# checked against the trees and copied, in one pass), beside a plain `cp -a` of the same tree and
# `git hash-object` over its files. With BEFORE=binary, that binary's warm compiles interleaved.
# Usage: benchmarks/git-cache.sh [files=1000] [runs=15]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files=${1:-1000}
runs=${2:-15}
source "$root/benchmarks/release-binary.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/multipack-git-cache-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@example.com \
  GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@example.com

python3 - "$work/child" "$files" << 'PY'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 9))) for _ in range(2000)]
os.makedirs(os.path.join(root, 'bin'))
for name, body in [('detect', 'echo Big'), ('compile', 'echo big compile'), ('release', 'echo "--- {}"')]:
    path = os.path.join(root, 'bin', name)
    with open(path, 'w') as f: f.write('#!/usr/bin/env bash\n' + body + '\n')
    os.chmod(path, 0o755)
for i in range(count - 3):
    d = os.path.join(root, 'lib', 'mod%03d' % (i // 20))
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, 'f%04d.rb' % i)
    if i % 97 == 0:
        os.symlink('f%04d.rb' % (i - 1 if i % 20 else i + 1), path)
        continue
    with open(path, 'w') as f:
        size, text = rng.randint(200, 10000), []
        while size > 0:
            line = ' '.join(rng.choice(words) for _ in range(8)) + '\n'
            text.append(line); size -= len(line)
        f.write(''.join(text))
    if i % 50 == 0: os.chmod(path, 0o755)
PY
git -C "$work/child" init -q --initial-branch=main && git -C "$work/child" add -A && git -C "$work/child" commit -qm big
bytes=$(du -sb --apparent-size "$work/child" --exclude=.git | cut -f1)

setup() { # binary dir → a buildpack layout of multipack
  mkdir -p "$2/vendor"
  cp -R "$root/bin" "$root/lib" "$root/buildpack.toml" "$2/"
  cp "$1" "$2/vendor/multipack-$(uname -m)"
}
setup "$MULTIPACK" "$work/after"
[ -n "${BEFORE:-}" ] && setup "$BEFORE" "$work/before"
mkdir -p "$work/build" "$work/env"
echo "file://$work/child#$(git -C "$work/child" rev-parse HEAD)" > "$work/build/.buildpacks"

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
copy_ms=$(for _ in $(seq 1 "$runs"); do
  rm -rf "$work/copy"
  s=${EPOCHREALTIME/[.,]/}
  cp -a "$work/child/bin" "$work/child/lib" --target-directory="$(mkdir -p "$work/copy" && echo "$work/copy")"
  e=${EPOCHREALTIME/[.,]/}
  echo $(((e - s)))
done | median | awk '{printf "%.1f", $1 / 1000}')
hash_ms=$(for _ in $(seq 1 "$runs"); do
  s=${EPOCHREALTIME/[.,]/}
  (cd "$work/child" && git ls-files -z | xargs -0 git hash-object --no-filters > /dev/null)
  e=${EPOCHREALTIME/[.,]/}
  echo $(((e - s)))
done | median | awk '{printf "%.1f", $1 / 1000}')

echo "one git child of $files files ($((bytes / 1024)) KB), warm compile, median of $runs runs"
printf "%-48s %7s ms\n" "cp -a of the same tree" "$copy_ms"
printf "%-48s %7s ms\n" "git hash-object of the same files" "$hash_ms"
# Warm compiles, interleaved with BEFORE's when given: wall and CPU (getrusage of the compile and
# everything it started, in microseconds), and the child's fetch time from the report.
python3 - "$work" "$runs" after ${BEFORE:+before} << 'PY'
import os, resource, shutil, statistics, subprocess, sys, time
work, runs, binaries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
build, env = f"{work}/build", f"{work}/env"
def compile(name):
    cache = f"{work}/cache-{name}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([f"{work}/{name}/bin/compile", build, cache, env], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0 or "(cached," not in out.stdout:
        sys.exit(f"{name}: the warm compile failed or did not use the cache:\n{out.stdout}{out.stderr}")
    report = subprocess.run([f"{work}/{name}/bin/report", build, cache, env], capture_output=True, text=True).stdout
    fetch = next(float(l.split(": ")[1]) for l in report.splitlines() if l.startswith("child_1_fetch_seconds"))
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, fetch
samples = {name: [] for name in binaries}
for name in binaries:
    os.makedirs(f"{work}/cache-{name}", exist_ok=True)
    subprocess.run([f"{work}/{name}/bin/compile", build, f"{work}/cache-{name}", env], capture_output=True)
for _ in range(runs):
    for name in binaries:
        samples[name].append(compile(name))
for name in binaries:
    wall, cpu, fetch = (statistics.median(s[i] for s in samples[name]) * 1000 for i in range(3))
    label = "now (checked copy)" if name == "after" else "BEFORE (unchecked copy)"
    print(f"{'warm compile, ' + label:48} {wall:7.1f} ms wall {cpu:7.1f} ms CPU   child's fetch {fetch:6.1f} ms")
PY
