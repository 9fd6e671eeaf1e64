#!/usr/bin/env bash
# Slug economy (SPEC §14). 1) What the size walks cost: a compile whose four children create a
# ~200 MB / 25,000-file tree, with MULTIPACK_SIZES on and off (budget: the walks add ≤ 5% to the
# build's wall time). 2) The .slugfilter pass on that tree against rsync --delete-excluded with
# the same rules, and a check that both leave the same files.
# Usage: benchmarks/sizes.sh [runs=3]    (MULTIPACK=path skips the release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
source "$root/benchmarks/release-binary.sh"
command -v rsync >/dev/null || { echo "rsync is needed (apt-get install rsync)" >&2; exit 1; }

work=$(mktemp -d /tmp/multipack-sizes-bench-XXXXXX)
trap '[ -n "${KEEP:-}" ] || { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }' EXIT
export TMPDIR="$work/tmp" MULTIPACK_BUILDPACK_DIR="$work/mp"
mkdir -p "$TMPDIR" "$MULTIPACK_BUILDPACK_DIR"

# The tree, in four parts (one per child): a Nix-like store of 200 packages, each with shared
# libraries, headers, docs and binaries; 25,000 files, ~200 MB.
python3 - "$work/parts" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(7)
blob = os.urandom(4 << 20)
def write(path, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        while size > 0:
            n = min(size, len(blob)); start = rng.randint(0, len(blob) - n)
            f.write(blob[start:start + n]); size -= n
files = 0
for p in range(200):
    part = os.path.join(root, 'part%d' % (p % 4), 'store', '%03d%s-pkg' % (p, '-keep' if p % 10 == 0 else ''))
    for i in range(2):                                  # 400 libraries, ~110 MB
        write(os.path.join(part, 'lib', 'lib%d.so.%d' % (i, p % 3)), rng.randint(150 << 10, 400 << 10)); files += 1
    for i in range(40):                                 # 8,000 headers, ~24 MB
        write(os.path.join(part, 'include', 'sub%d' % (i % 4), 'h%02d.h' % i), rng.randint(1000, 5000)); files += 1
    for i in range(80):                                 # 16,000 docs, ~56 MB
        write(os.path.join(part, 'share', 'doc', 'page%02d.html' % i), rng.randint(1500, 5500)); files += 1
    for i in range(3):                                  # 600 binaries, ~10 MB
        write(os.path.join(part, 'bin', 'tool%d' % i), rng.randint(8 << 10, 25 << 10)); files += 1
print(files, file=sys.stderr)
PY
for k in 0 1 2 3; do
  mkdir -p "$work/child$k/bin"
  printf '#!/bin/sh\necho Part%s\n' "$k" > "$work/child$k/bin/detect"
  printf '#!/bin/sh\ncp -a "%s/parts/part%s/." "$1/"\n' "$work" "$k" > "$work/child$k/bin/compile"
  chmod +x "$work/child$k/bin/"*
done
mkdir -p "$work/app-template"
for k in 0 1 2 3; do echo "$work/child$k"; done > "$work/app-template/.buildpacks"
bytes=$(du -sb "$work/parts" | cut -f1)
files=$(find "$work/parts" -type f | wc -l)

now() { date +%s%N; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
seconds() { awk -v s="$1" -v e="$2" 'BEGIN {printf "%.3f\n", (e - s) / 1e9}'; }

# One compile from a fresh app; prints its wall seconds and the report's sizes_seconds.
compile() { # sizes(1|0) → "wall walks"
  rm -rf "$work/app" "$work/env" "$work/cache"
  cp -a "$work/app-template" "$work/app"
  mkdir -p "$work/env" "$work/cache"
  printf '%s' "$1" > "$work/env/MULTIPACK_SIZES"
  local start end
  start=$(now)
  "$MULTIPACK" compile "$work/app" "$work/cache" "$work/env" > "$work/compile.log"
  end=$(now)
  local walks
  walks=$("$MULTIPACK" report "$work/app" | awk '/^sizes_seconds:/ {print $2}')
  echo "$(seconds "$start" "$end") ${walks:-0}"
}

cat "$work/parts"/*/store/000-keep-pkg/lib/* > /dev/null   # warm up the binary and the page cache
compile 0 > /dev/null
: > "$work/on"; : > "$work/off"
for _ in $(seq 1 "$runs"); do
  compile 1 >> "$work/on"
  compile 0 >> "$work/off"
done
on_wall=$(cut -d' ' -f1 "$work/on" | median)
off_wall=$(cut -d' ' -f1 "$work/off" | median)
walks=$(cut -d' ' -f2 "$work/on" | median)

echo "tree: $files files, $((bytes / 1048576)) MB, made by 4 children (cp -a)"
echo
echo "size walks (median of $runs compiles each; 6 walks a build: before, after each child, at the end)"
printf '  %-34s %8ss\n' "compile, MULTIPACK_SIZES=0" "$off_wall" "compile, MULTIPACK_SIZES=1" "$on_wall"
printf '  %-34s %8ss\n' "time in the walks (report)" "$walks"
awk -v on="$on_wall" -v off="$off_wall" -v w="$walks" 'BEGIN {
  printf "  %-34s %8.1f%%\n", "walks / build wall (budget ≤ 5%)", 100 * w / on
  printf "  %-34s %8.1f%%  (wall-time noise included)\n", "on / off - 1", 100 * (on / off - 1)
}'
echo

# .slugfilter on the full tree vs rsync with the same rules.
cat > "$work/rules" <<'RULES'
# Walk into the store; keep the *keep* packages and every shared library; the rest of the store goes.
+ store/**/
+ store/*keep*/**
+ *[._]so*
- store/**
RULES
mkdir -p "$work/full"
for k in 0 1 2 3; do cp -a "$work/parts/part$k/." "$work/full/"; done
echo "placeholder" > "$work/full/.buildpacks"
cp "$work/rules" "$work/full/.slugfilter"

filter_ours() { # → seconds inside multipack (report) and wall
  rm -rf "$work/ours"; cp -a "$work/full" "$work/ours"
  echo "$work/noop" > "$work/ours/.buildpacks"   # compile needs one child: a no-op
  rm -rf "$work/env"; mkdir -p "$work/env"; printf 0 > "$work/env/MULTIPACK_SIZES"
  local start end
  start=$(now)
  "$MULTIPACK" compile "$work/ours" "$work/cache" "$work/env" > "$work/filter.log"
  end=$(now)
  echo "$("$MULTIPACK" report "$work/ours" | awk '/^slugfilter_seconds:/ {print $2}') $(seconds "$start" "$end")"
}
mkdir -p "$work/noop/bin"
printf '#!/bin/sh\necho Noop\n' > "$work/noop/bin/detect"
printf '#!/bin/sh\n' > "$work/noop/bin/compile"
chmod +x "$work/noop/bin/"*
rsync_copy() {
  rm -rf "$work/copy"
  local start end
  start=$(now)
  rsync -a --delete-excluded --filter="merge $work/rules" "$work/full/" "$work/copy/"
  end=$(now)
  seconds "$start" "$end"
}
rsync_trim() { # rsync onto a full copy: only the deletions are left to do, as for multipack
  rm -rf "$work/copy"; cp -a "$work/full" "$work/copy"
  local start end
  start=$(now)
  rsync -a --delete-excluded --filter="merge $work/rules" "$work/full/" "$work/copy/"
  end=$(now)
  seconds "$start" "$end"
}
: > "$work/f-ours"; : > "$work/f-copy"; : > "$work/f-trim"
for _ in $(seq 1 "$runs"); do
  filter_ours >> "$work/f-ours"
  rsync_copy >> "$work/f-copy"
  rsync_trim >> "$work/f-trim"
done
ours=$(cut -d' ' -f1 "$work/f-ours" | median)
ours_wall=$(cut -d' ' -f2 "$work/f-ours" | median)
copy=$(median < "$work/f-copy")
trim=$(median < "$work/f-trim")
removed=$(grep -m1 'Removed' "$work/filter.log" | sed 's/^ *//; s/:$//')

# The same files must be left: multipack's trimmed tree against rsync's copy (its own .buildpacks aside).
rsync_copy > /dev/null
list() { (cd "$1" && find . -mindepth 1 ! -path ./.buildpacks -printf '%y %p\n' | sort); }
if diff <(list "$work/ours") <(list "$work/copy") > "$work/diff"; then same="same files as rsync"; else same="DIFFERENT from rsync: $(wc -l < "$work/diff") lines of diff"; fi

echo ".slugfilter on the whole tree (median of $runs; rules: the README's example)"
echo "  $removed; $same"
printf '  %-34s %8ss\n' "multipack .slugfilter pass" "$ours" "  (the whole compile around it)" "$ours_wall" \
  "rsync --delete-excluded, into empty" "$copy" "rsync --delete-excluded, onto copy" "$trim"
awk -v o="$ours" -v c="$copy" -v t="$trim" 'BEGIN {
  printf "  %-34s %8.2f\n", "multipack / rsync into empty", o / c
  printf "  %-34s %8.2f\n", "multipack / rsync onto a copy", o / t
}'
