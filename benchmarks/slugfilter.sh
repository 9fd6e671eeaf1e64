#!/usr/bin/env bash
# `.slugfilter` against rsync on the same rules and tree: RULES rules (half literal names and
# paths, half wildcards, as a long generated filter would be) over FILES files in directories of
# 20, almost none of them matching, so that the time is the matching. multipack applies the rules
# in place (`multipack filter DIR`, the code compile runs); rsync decides the same paths with
# `rsync -a --dry-run --delete-excluded --filter='merge RULES' SRC/ DST/`. Wall time and peak
# memory (max RSS) of each, the median of RUNS; a second line with wildcards only.
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
# Prints "seconds peakKB" medians for a command run RUNS times (after `prepare`).
measure() {
  : > "$work/samples"
  for _ in $(seq 1 "$runs"); do
    prepare
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2> "$work/err" || { cat "$work/err"; exit 1; }
    tail -1 "$work/time" >> "$work/samples"
  done
  echo "$(cut -d' ' -f1 "$work/samples" | median) $(cut -d' ' -f2 "$work/samples" | median)"
}

echo "$rules rules over $files files, median of $runs runs"
printf "%-22s %10s %10s %12s %12s %8s\n" "rules" "multipack" "rsync" "mp peak" "rsync peak" "ratio"
for set in mixed wildcards; do
  prepare() { rm -rf "$work/copy" && cp -a "$work/tree" "$work/copy" && cp "$work/$set" "$work/copy/.slugfilter"; }
  read -r ours our_peak < <(measure "$MULTIPACK" filter "$work/copy")
  [ -e "$work/copy/pkg0000/lib/f00000.js" ] && { echo "multipack did not apply the rules"; exit 1; }
  prepare() { rm -rf "$work/dst"; }
  read -r theirs their_peak < <(measure rsync -a --dry-run --delete-excluded --filter="merge $work/$set" \
    "$work/tree/" "$work/dst/")
  awk -v s="$set" -v a="$ours" -v b="$theirs" -v pa="$our_peak" -v pb="$their_peak" 'BEGIN {
    printf "%-22s %9.2fs %9.2fs %9.1f MB %9.1f MB %7.2fx\n", s, a, b, pa / 1024, pb / 1024, (b > 0 ? a / b : 0)
  }'
done
echo "rules file: $(du -k "$work/mixed" | cut -f1) KB (mixed)"
