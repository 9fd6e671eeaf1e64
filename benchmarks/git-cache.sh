#!/usr/bin/env bash
# What checking a cached git checkout against its commit costs (SPEC §5): one child the size of a
# real buildpack (FILES files, ~5 KB each on average, in directories of 20, a few executables and
# symlinks), built cold, then warm RUNS times. Reported: the child's fetch time on a warm build
# (read, hashed as git blobs, checked against the trees and copied in one pass) beside what a
# plain copy of the same tree costs (`cp -a`, what a warm fetch did before it was checked) and
# `git hash-object` over the same files (git's own hashing), and the whole warm compile's wall
# and CPU time. With BEFORE=binary, the same warm compile of that binary beside it.
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
# Warm compiles of one binary: "fetch wall cpu" medians in ms.
measure() {
  local dir=$1 cache="$work/cache-$(basename "$1")"
  rm -rf "$cache" && mkdir -p "$cache"
  "$dir/bin/compile" "$work/build" "$cache" "$work/env" > /dev/null 2>&1
  : > "$work/samples"
  for _ in $(seq 1 "$runs"); do
    /usr/bin/time -f "%e %U %S" -o "$work/time" "$dir/bin/compile" "$work/build" "$cache" "$work/env" > "$work/log" 2>&1 ||
      { cat "$work/log"; exit 1; }
    grep -q "(cached," "$work/log" || { echo "not served from the cache:"; cat "$work/log"; exit 1; }
    fetch=$("$dir/bin/report" "$work/build" "$cache" "$work/env" | awk -F': ' '/^child_1_fetch_seconds/ {print $2}')
    read -r wall user sys < "$work/time"
    echo "$fetch $wall $user $sys" >> "$work/samples"
  done
  printf "%s %s %s\n" \
    "$(cut -d' ' -f1 "$work/samples" | median | awk '{printf "%.1f", $1 * 1000}')" \
    "$(cut -d' ' -f2 "$work/samples" | median | awk '{printf "%.0f", $1 * 1000}')" \
    "$(awk '{print $3 + $4}' "$work/samples" | median | awk '{printf "%.0f", $1 * 1000}')"
}
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

read -r fetch wall cpu < <(measure "$work/after")
echo "one git child of $files files ($((bytes / 1024)) KB), warm compile, median of $runs runs"
printf "%-40s %8s ms\n" "warm fetch (checked copy)" "$fetch"
printf "%-40s %8s ms\n" "cp -a of the same tree" "$copy_ms"
printf "%-40s %8s ms\n" "git hash-object of the same files" "$hash_ms"
printf "%-40s %8s ms wall, %s ms CPU\n" "warm compile" "$wall" "$cpu"
if [ -n "${BEFORE:-}" ]; then
  read -r fetch wall cpu < <(measure "$work/before")
  printf "%-40s %8s ms\n" "warm fetch, BEFORE (unchecked copy)" "$fetch"
  printf "%-40s %8s ms wall, %s ms CPU\n" "warm compile, BEFORE" "$wall" "$cpu"
fi
