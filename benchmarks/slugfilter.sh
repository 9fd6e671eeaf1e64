#!/usr/bin/env bash
# `.slugfilter` against rsync on the same rules and tree: RULES rules (half literal names and
# paths, half wildcards, as a long generated filter would be) over FILES files in directories of
# 20, one of them matching, so that the time is the matching. multipack applies the rules as
# compile does (an app whose one child does nothing; the time is the report's slugfilter_seconds,
# the memory the compile's peak RSS less that of the same compile without rules); rsync decides
# the same paths with `rsync -a --dry-run --delete-excluded --filter='merge RULES' SRC/ DST/`.
# The median of RUNS; a second line with wildcards only.
# Usage: benchmarks/slugfilter.sh [rules=10000] [files=5000] [runs=5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rules=${1:-10000}
files=${2:-5000}
runs=${3:-5}
source "$root/benchmarks/release-binary.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/multipack-slugfilter-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

python3 - "$work" "$rules" "$files" << 'PY'
import os, sys
work, rules, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tree = os.path.join(work, 'tree')
for i in range(files):
    d = os.path.join(tree, 'pkg%04d' % (i // 20), 'lib')
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'f%05d.js' % i), 'w') as f: f.write('x')
def write(name, lines):
    with open(os.path.join(work, name), 'w') as f: f.write('\n'.join(lines) + '\n')
mixed, wild = [], []
for i in range(rules):
    kind = i % 4
    mixed.append(['- name%05d' % i, '- /pkg%04d/gone%d' % (i % 250, i), '- *.tmp%05d' % i,
                  '- pkg*/cache%05d/**' % i][kind])
    wild.append(['- *.tmp%05d' % i, '- pkg*/cache%05d/**' % i, '- **/obj%05d/' % i, '- f?%05d.o' % i][kind])
# One rule that matches, at the end: every path is tried against every rule before it.
write('mixed', mixed + ['- pkg0000/lib/f00000.js'])
write('wildcards', wild + ['- pkg0000/lib/f00000.js'])
PY

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# multipack as a buildpack, and an app whose one child does nothing.
mkdir -p "$work/multipack/vendor" "$work/child/bin" "$work/cache" "$work/env"
cp -R "$root/bin" "$root/lib" "$root/buildpack.toml" "$work/multipack/"
cp "$MULTIPACK" "$work/multipack/vendor/multipack-$(uname -m)"
printf '#!/bin/sh\necho Nothing\n' > "$work/child/bin/detect"
printf '#!/bin/sh\n' > "$work/child/bin/compile"
chmod +x "$work/child/bin/"*
echo 0 > "$work/env/MULTIPACK_SIZES"
# Prints "seconds peakKB" medians of RUNS compiles with `rules` as the app's .slugfilter.
filter() {
  : > "$work/samples"
  for _ in $(seq 1 "$runs"); do
    rm -rf "$work/app" && cp -a "$work/tree" "$work/app"
    echo "$work/child" > "$work/app/.buildpacks"
    [ -n "$1" ] && cp "$work/$1" "$work/app/.slugfilter"
    /usr/bin/time -f "%M" -o "$work/time" "$work/multipack/bin/compile" "$work/app" "$work/cache" "$work/env" \
      > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
    seconds=$("$work/multipack/bin/report" "$work/app" "$work/cache" "$work/env" |
      awk -F': ' '/^slugfilter_seconds/ {print $2}')
    echo "${seconds:-0} $(tail -1 "$work/time")" >> "$work/samples"
  done
  echo "$(cut -d' ' -f1 "$work/samples" | median) $(cut -d' ' -f2 "$work/samples" | median)"
}
rsync_time() {
  : > "$work/samples"
  for _ in $(seq 1 "$runs"); do
    rm -rf "$work/dst"
    /usr/bin/time -f "%e %M" -o "$work/time" rsync -a --dry-run --delete-excluded --filter="merge $work/$1" \
      "$work/tree/" "$work/dst/" > /dev/null
    tail -1 "$work/time" >> "$work/samples"
  done
  echo "$(cut -d' ' -f1 "$work/samples" | median) $(cut -d' ' -f2 "$work/samples" | median)"
}

read -r _ base_peak < <(filter "")
echo "$rules rules over $files files, median of $runs runs"
printf "%-12s %12s %10s %18s %12s %8s\n" "rules" "multipack" "rsync" "multipack memory" "rsync peak" "ratio"
for set in mixed wildcards; do
  read -r ours our_peak < <(filter "$set")
  grep -q "Removed 1 file" "$work/log" || { echo "multipack did not apply the rules:"; cat "$work/log"; exit 1; }
  read -r theirs their_peak < <(rsync_time "$set")
  awk -v s="$set" -v a="$ours" -v b="$theirs" -v pa="$our_peak" -v base="$base_peak" -v pb="$their_peak" \
    -v size="$(stat -c %s "$work/$set")" 'BEGIN {
    printf "%-12s %11.2fs %9.2fs %10.1f MB (+%.1f) %9.1f MB %7.2fx\n", s, a, b, pa / 1024, (pa - base) / 1024, pb / 1024,
      (b > 0 ? a / b : 0)
    printf "%-12s %d KB of rules: %.1f bytes of memory per byte\n", "", size / 1024, (pa - base) * 1024 / size
  }'
done
