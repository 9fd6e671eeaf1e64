#!/usr/bin/env bash
# Fetching, side by side in one run:
#   1. 4 archives from a loopback server that adds 1 s per request: parallel vs one at a time
#      (budget: ratio <= 0.35);
#   2. cold vs warm builds of that app: wall time and requests (pinned and unpinned);
#   3. in-process extraction vs GNU tar on a ~200 MB .tar.gz and .tar.xz (benchmarks/extract.sh;
#      budget <= 1.2x tar's wall, peak RSS <= 64 MB). Skip it with SKIP_EXTRACT=1.
# Usage: benchmarks/fetch.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/benchmarks/release-binary.sh"
binary=$MULTIPACK

work=$(mktemp -d /tmp/multipack-fetch-bench-XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/multipack/vendor" "$work/served" "$work/env"
cp -R "$root/bin" "$root/lib" "$root/buildpack.toml" "$work/multipack/"
cp "$binary" "$work/multipack/vendor/multipack-$(uname -m)"

for i in 1 2 3 4; do
  bp="$work/src/bp$i-main"
  mkdir -p "$bp/bin"
  printf '#!/usr/bin/env bash\necho "Archive child %s"\n' "$i" > "$bp/bin/detect"
  printf '#!/usr/bin/env bash\ntrue\n' > "$bp/bin/compile"
  head -c 2000000 /dev/urandom > "$bp/payload.bin"   # 2 MB each, so there is something to move
  chmod +x "$bp/bin/"*
  tar -C "$work/src" -czf "$work/served/bp$i.tgz" "bp$i-main"
done

python3 "$root/benchmarks/slow_server.py" "$work/served" 1 "$work/port" &
server_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"
counts() { curl -s "$base/_counts"; }

write_list() { # $1 = pinned|unpinned
  : > "$work/build/.buildpacks"
  for i in 1 2 3 4; do
    if [ "$1" = pinned ]; then
      echo "$base/bp$i.tgz sha256=$(sha256sum "$work/served/bp$i.tgz" | cut -c1-64)" >> "$work/build/.buildpacks"
    else
      echo "$base/bp$i.tgz" >> "$work/build/.buildpacks"
    fi
  done
}

now() { date +%s%N; }
# Runs one compile; prints "wall_seconds requests not_modified" (requests made by this build).
build() {
  local before after start end
  read -r r0 n0 < <(counts)
  start=$(now)
  env "$@" "$work/multipack/bin/compile" "$work/build" "$work/cache" "$work/env" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  end=$(now)
  read -r r1 n1 < <(counts)
  awk -v s="$start" -v e="$end" -v r=$((r1 - r0)) -v n=$((n1 - n0)) 'BEGIN {printf "%.3f %d %d\n", (e - s) / 1e9, r, n}'
}

mkdir -p "$work/build"
write_list unpinned
rm -rf "$work/cache"; mkdir "$work/cache"; read -r serial _ _ < <(build MULTIPACK_FETCH_PARALLELISM=1)
rm -rf "$work/cache"; mkdir "$work/cache"; read -r parallel _ _ < <(build)
echo "== 1. fetching 4 archives, 1 s added per request"
awk -v s="$serial" -v p="$parallel" 'BEGIN {
  printf "one at a time: %.3f s   parallel (4): %.3f s   ratio: %.3f (budget <= 0.35: %s)\n", s, p, p / s, (p / s <= 0.35) ? "met" : "NOT met" }'

echo "== 2. cold vs warm builds (wall, requests, of which 304)"
for mode in unpinned pinned; do
  write_list "$mode"
  rm -rf "$work/cache" && mkdir "$work/cache"  # Heroku gives CACHE_DIR; multipack never makes it
  read -r cw cr cn < <(build)
  read -r ww wr wn < <(build)
  awk -v m="$mode" -v cw="$cw" -v cr="$cr" -v cn="$cn" -v ww="$ww" -v wr="$wr" -v wn="$wn" 'BEGIN {
    printf "%-9s cold: %6.3f s, %d requests (%d x 304)   warm: %6.3f s, %d requests (%d x 304)   warm/cold: %.3f\n",
      m, cw, cr, cn, ww, wr, wn, ww / cw }'
done

if [ -z "${SKIP_EXTRACT:-}" ]; then
  echo "== 3. extraction vs GNU tar"
  "$root/benchmarks/extract.sh" "$binary" "$work/extract"
fi
