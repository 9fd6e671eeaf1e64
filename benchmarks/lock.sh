#!/usr/bin/env bash
# Locking: warm rebuilds of an app with 4 floating children (2 git branches served over git's dumb
# HTTP protocol, 2 unpinned archives) from a loopback server that adds 200 ms to every request:
# without .buildpacks.lock (each warm build asks: ls-remote, 304) against with one (no request).
# Prints both (wall time, requests) and the ratio.
# Usage: benchmarks/lock.sh [warm runs=3]   (BINARY=path/to/multipack skips the release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
MULTIPACK=${MULTIPACK:-${BINARY:-}}
source "$root/benchmarks/release-binary.sh"
binary=$MULTIPACK

work=$(mktemp -d /tmp/multipack-lock-bench-XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export TMPDIR="$work/tmp"
mkdir -p "$TMPDIR" "$work/multipack/vendor" "$work/served" "$work/env" "$work/build"
cp -R "$root/bin" "$root/lib" "$root/buildpack.toml" "$work/multipack/"
cp "$binary" "$work/multipack/vendor/multipack-$(uname -m)"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
git_id=(-c user.name=bench -c user.email=bench@example.com)

child() { # $1 = directory, $2 = name
  mkdir -p "$1/bin"
  printf '#!/usr/bin/env bash\necho "Child %s"\n' "$2" > "$1/bin/detect"
  printf '#!/usr/bin/env bash\ntrue\n' > "$1/bin/compile"
  chmod +x "$1/bin/"*
}
for i in 1 2; do
  child "$work/src/git$i" "git$i"
  git -C "$work/src/git$i" init -q -b main
  git -C "$work/src/git$i" add -A
  git -C "$work/src/git$i" "${git_id[@]}" commit -qm "child $i"
  git clone -q --bare "$work/src/git$i" "$work/served/git$i.git"
  git -C "$work/served/git$i.git" update-server-info
done
for i in 3 4; do
  child "$work/src/archive$i/bp-main" "archive$i"
  tar -C "$work/src/archive$i" -czf "$work/served/archive$i.tgz" bp-main
done

python3 "$root/benchmarks/slow_server.py" "$work/served" 0.2 "$work/port" &
server_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"
printf '%s\n' "$base/git1.git#main" "$base/git2.git#main" "$base/archive3.tgz" "$base/archive4.tgz" \
  > "$work/build/.buildpacks"
counts() { curl -s "$base/_counts"; }

now() { date +%s%N; }
# Runs one compile; prints "wall_seconds requests not_modified" (what this build asked).
build() {
  local start end r0 n0 r1 n1
  read -r r0 n0 < <(counts)
  start=$(now)
  "$work/multipack/bin/compile" "$work/build" "$work/cache" "$work/env" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  end=$(now)
  read -r r1 n1 < <(counts)
  awk -v s="$start" -v e="$end" -v r=$((r1 - r0)) -v n=$((n1 - n0)) 'BEGIN {printf "%.3f %d %d\n", (e - s) / 1e9, r, n}'
}
# The mean of `runs` warm builds: "wall requests not_modified" per build.
warm() {
  local total=0 requests=0 not_modified=0 w r n
  for _ in $(seq "$runs"); do
    read -r w r n < <(build)
    total=$(awk -v a="$total" -v b="$w" 'BEGIN {print a + b}')
    requests=$r not_modified=$n
  done
  awk -v t="$total" -v k="$runs" -v r="$requests" -v n="$not_modified" 'BEGIN {printf "%.3f %d %d\n", t / k, r, n}'
}

read -r cold cold_requests _ < <(build)
read -r unlocked unlocked_requests unlocked_304 < <(warm)
grep -q "4 of 4 buildpacks follow a moving ref" "$work/log" || { echo "no moving-ref note in the log" >&2; exit 1; }
"$binary" lock "$work/build" > "$work/lock-log" 2>&1 || { cat "$work/lock-log"; exit 1; }
read -r locked locked_requests _ < <(warm)
grep -q "Using .buildpacks.lock (4 of 4 pinned)" "$work/log" || { cat "$work/log"; exit 1; }

echo "== warm rebuilds, 4 floating children (2 git branches, 2 archives), 200 ms added per request, mean of $runs"
printf 'cold build:          %6.3f s, %d requests\n' "$cold" "$cold_requests"
printf 'warm without a lock: %6.3f s, %d requests per build (%d x 304)\n' "$unlocked" "$unlocked_requests" "$unlocked_304"
printf 'warm with a lock:    %6.3f s, %d requests per build\n' "$locked" "$locked_requests"
awk -v u="$unlocked" -v l="$locked" 'BEGIN { printf "with/without: %.3f (%.1fx faster)\n", l / u, u / l }'
