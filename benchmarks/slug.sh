#!/usr/bin/env bash
# Slug packing: `multipack pack` (the TarGzWriter `multipack build` uses) against `tar czf` on the
# same generated ~200 MB build directory (budget: ≤ 1.2× tar's wall time), then the end-to-end
# overhead of `multipack build` on the fixture app over the sum of its children's own time.
# Usage: benchmarks/slug.sh [runs=3] [build runs=5]    (MULTIPACK=path skips the release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
build_runs=${2:-5}
source "$root/benchmarks/release-binary.sh"

work=$(mktemp -d /tmp/multipack-slug-bench-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# A build directory shaped like a real slug: many small source-like files (node_modules,
# site-packages), some large incompressible binaries and some very compressible data.
python3 - "$work/app" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz_') for _ in range(rng.randint(2, 12))) for _ in range(3000)]
def source(size):
    out, n = [], 0
    while n < size:
        line = '  ' * rng.randint(0, 4) + ' '.join(rng.choice(words) for _ in range(rng.randint(2, 10))) + ';\n'
        out.append(line); n += len(line)
    return ''.join(out).encode()
chunks = [source(64 << 10) for _ in range(64)]
for i in range(24000):                       # ~100 MB of source in 24 000 files
    d = os.path.join(root, 'node_modules', 'pkg%03d' % (i // 100), 'lib')
    os.makedirs(d, exist_ok=True)
    c = chunks[i % len(chunks)]
    size = rng.randint(512, 8192)
    start = rng.randint(0, len(c) - size)
    with open(os.path.join(d, 'f%05d.js' % i), 'wb') as f: f.write(c[start:start + size])
os.makedirs(os.path.join(root, '.heroku', 'vendor'), exist_ok=True)
for i in range(6):                           # 60 MB of binaries
    with open(os.path.join(root, '.heroku', 'vendor', 'lib%d.so' % i), 'wb') as f: f.write(os.urandom(10 << 20))
for i in range(4):                           # 40 MB of logs and fixtures
    with open(os.path.join(root, 'data%d.csv' % i), 'wb') as f:
        f.write(b''.join(chunks[(i * 7 + k) % len(chunks)] for k in range(160)))
PY
bytes=$(du -sb "$work/app" | cut -f1)
files=$(find "$work/app" -type f | wc -l)
tar cf /dev/null -C "$work" app   # warm the page cache for both

now() { date +%s%N; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
time_runs() { # command... → median seconds
  for _ in $(seq 1 "$runs"); do
    local start end
    start=$(now)
    "$@" > /dev/null
    end=$(now)
    awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f\n", (e - s) / 1e9}'
  done | median
}
tar_wall=$(time_runs tar czf "$work/tar.tgz" -C "$work" app)
pack_wall=$(time_runs "$MULTIPACK" pack "$work/app" "$work/slug.tgz")
tar_size=$(stat -c %s "$work/tar.tgz")
pack_size=$(stat -c %s "$work/slug.tgz")
rm -rf "$work/app" "$work/tar.tgz" "$work/slug.tgz"

# multipack build on the fixture app, with its own HOME, cache and TMPDIR.
export HOME="$work/home" XDG_CACHE_HOME="$work/xdg" TMPDIR="$work/tmp"
mkdir -p "$HOME" "$XDG_CACHE_HOME" "$TMPDIR"
"$MULTIPACK" build "$root/fixtures/apps/python-node" --json > /dev/null 2>&1   # first build: warm caches
for _ in $(seq 1 "$build_runs"); do
  start=$(now)
  "$MULTIPACK" build "$root/fixtures/apps/python-node" --json > "$work/build.json" 2> "$work/build.log" || { cat "$work/build.log"; exit 1; }
  end=$(now)
  python3 - "$work/build.json" "$start" "$end" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
own = sum(c[k] for c in s['children'] for k in ('detect_seconds', 'compile_seconds', 'release_seconds'))
own += sum(s.get('hook_seconds', {}).values())
print('%.4f %.4f' % ((int(sys.argv[3]) - int(sys.argv[2])) / 1e9, own))
PY
done > "$work/builds"
build_wall=$(cut -d' ' -f1 "$work/builds" | median)
build_own=$(cut -d' ' -f2 "$work/builds" | median)

awk -v b="$bytes" -v f="$files" -v tw="$tar_wall" -v pw="$pack_wall" -v ts="$tar_size" -v ps="$pack_size" \
  -v r="$runs" -v br="$build_runs" -v bw="$build_wall" -v bo="$build_own" 'BEGIN {
  printf "slug packing: %.1f MB in %d files, median of %d runs\n", b / 1048576, f, r
  printf "  %-34s %9s %12s\n", "", "wall", "slug"
  printf "  %-34s %8.2fs %10.1f MB\n", "tar czf", tw, ts / 1048576
  printf "  %-34s %8.2fs %10.1f MB\n", "multipack pack (TarGzWriter)", pw, ps / 1048576
  printf "  %-34s %8.2fx %11.3fx   (budget: wall <= 1.20x)\n", "multipack / tar", pw / tw, ps / ts
  printf "multipack build fixtures/apps/python-node, median of %d warm runs\n", br
  printf "  %-34s %8.3fs\n", "wall", bw
  printf "  %-34s %8.3fs\n", "children and hooks (own time)", bo
  printf "  %-34s %8.3fs   (%.1fx the children'"'"'s own time)\n", "multipack overhead", bw - bo, bw / bo
}'
