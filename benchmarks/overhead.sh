#!/usr/bin/env bash
# multipack's own overhead per child: an app with 10 trivial git children, built cold then warm.
# Overhead = compile's wall time minus the children's own time (their detect, compile and
# release processes, as `report` records them), divided by the number of children.
# SPEC §18's two budgets follow: the warm build's CPU (user + system of the whole process tree)
# against the same children run bare by a shell loop (detect, compile, their export sourced,
# release), ≤ 1.5×; and, when MULTI_BUILDPACK names a checkout of the bash heroku-buildpack-multi,
# the warm build's wall time against that one's on the same app, ≤ 0.25×.
# The warm figure is the run of median overhead (the children's own time varies with the machine
# and cancels out), with the quartiles of all warm runs beside it. Work files go in TMPDIR.
# Where unprivileged namespaces work, the same is measured again on a private tmpfs, side by side:
# on an ext4 without a journal, making a file skips every inode deleted in the last minutes
# (ext4's `recently_deleted`), so the figure there depends on what the machine deleted lately.
# Usage: [MULTI_BUILDPACK=DIR] benchmarks/overhead.sh [children=10] [warm runs=15]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
children=${1:-10}
runs=${2:-15}
source "$root/benchmarks/release-binary.sh"
binary=$MULTIPACK
# What weighs on making and removing files there: the file system, its options (`discard` trims
# freed blocks at once) and, for ext4, whether it has a journal.
describe_tmpdir() {
  local dir=${TMPDIR:-/tmp} source type options journal=""
  read -r source type options < <(findmnt -T "$dir" -no SOURCE,FSTYPE,OPTIONS 2> /dev/null) ||
    type=$(stat -f -c %T "$dir")
  if [ "${type:-}" = ext4 ] && [ -n "${source:-}" ]; then
    local device
    device=$(readlink -f "$source")
    if [ -e "/proc/fs/jbd2/${device##*/}-8" ]; then journal=", journal"; else journal=", no journal"; fi
  fi
  echo "TMPDIR ($dir, $type${options:+ $options}$journal)"
}
where=${OVERHEAD_ON:-$(describe_tmpdir)}

work=$(mktemp -d "${TMPDIR:-/tmp}/multipack-bench-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@example.com \
  GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@example.com

# multipack laid out as a buildpack, as Heroku would have it.
mkdir -p "$work/multipack/vendor"
cp -R "$root/bin" "$root/lib" "$root/buildpack.toml" "$work/multipack/"
cp "$binary" "$work/multipack/vendor/multipack-$(uname -m)"

mkdir -p "$work/build" "$work/env"
for i in $(seq 1 "$children"); do
  repo="$work/children/c$i"
  mkdir -p "$repo/bin"
  printf '#!/usr/bin/env bash\necho "Trivial %s"\n' "$i" > "$repo/bin/detect"
  printf '#!/usr/bin/env bash\necho "export TRIVIAL_%s=1" > "$(dirname "$0")/../export"\n' "$i" > "$repo/bin/compile"
  printf '#!/usr/bin/env bash\necho "default_process_types: {web%s: run}"\n' "$i" > "$repo/bin/release"
  chmod +x "$repo/bin/"*
  git -C "$repo" init -q --initial-branch=main && git -C "$repo" add -A && git -C "$repo" commit -qm trivial
  echo "file://$repo" >> "$work/build/.buildpacks"
done

# Prints "wall own" in seconds for one compile. The clock is bash's own, in microseconds (the
# decimal separator dropped, whatever the locale): a `date` process on each side would add about
# 2 ms of its start-up to every wall time.
build_once() {
  local start end
  start=${EPOCHREALTIME/[.,]/}
  "$work/multipack/bin/compile" "$work/build" "$work/cache" "$work/env" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  end=${EPOCHREALTIME/[.,]/}
  local own
  own=$("$work/multipack/bin/report" "$work/build" "$work/cache" "$work/env" |
    awk -F': ' '/^child_[0-9]+_(detect|compile|release)_seconds/ {s += $2} END {printf "%.6f", s}')
  awk -v s="$start" -v e="$end" -v o="$own" 'BEGIN {printf "%.6f %.6f\n", (e - s) / 1e6, o}'
}

# Heroku always hands compile an existing CACHE_DIR; an empty one makes the first build cold.
rm -rf "$work/cache" && mkdir -p "$work/cache"
build_once > "$work/cold"
read -r cold_wall cold_own < "$work/cold"
warm_walls=()
warm_owns=()
for _ in $(seq 1 "$runs"); do
  build_once > "$work/warm"
  read -r w o < "$work/warm"
  warm_walls+=("$w")
  warm_owns+=("$o")
done
# Warm runs sorted by overhead: the median one, and the quartiles.
for i in $(seq 0 $((runs - 1))); do
  awk -v w="${warm_walls[$i]}" -v o="${warm_owns[$i]}" 'BEGIN {printf "%.6f %s %s\n", w - o, w, o}'
done | sort -n > "$work/sorted"
read -r _ warm_wall warm_own < <(sed -n "$((runs / 2 + 1))p" "$work/sorted")
low=$(sed -n "$((runs / 4 + 1))p" "$work/sorted" | cut -d' ' -f1)
high=$(sed -n "$((runs - runs / 4))p" "$work/sorted" | cut -d' ' -f1)

awk -v n="$children" -v cw="$cold_wall" -v co="$cold_own" -v ww="$warm_wall" -v wo="$warm_own" -v runs="$runs" \
  -v low="$low" -v high="$high" -v where="$where" 'BEGIN {
  printf "children: %d (trivial git repos over file://), warm runs: %d (the median by overhead shown)\n", n, runs
  printf "on %s\n", where
  printf "%-6s %10s %14s %18s\n", "build", "wall (ms)", "children (ms)", "overhead/child (ms)"
  printf "%-6s %10.1f %14.1f %18.2f\n", "cold", cw * 1000, co * 1000, (cw - co) * 1000 / n
  printf "%-6s %10.1f %14.1f %18.2f\n", "warm", ww * 1000, wo * 1000, (ww - wo) * 1000 / n
  printf "warm overhead/child quartiles: %.2f to %.2f ms\n", low * 1000 / n, high * 1000 / n
  printf "warm/cold wall ratio: %.3f\n", ww / cw
}'

# SPEC §18: multipack's CPU on a warm build against the children run bare. bash's `time` counts
# the whole tree it waited for (the shim, multipack, git, every child and the bash that sources
# an export), to the millisecond.
cpu_of() {
  local TIMEFORMAT='%3U %3S'
  { time "$@" > "$work/log" 2>&1; } 2> "$work/time" || { cat "$work/log"; exit 1; }
  awk '{printf "%.6f\n", $1 + $2}' "$work/time"
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# The bare loop: each child checked out once, then run as a shell runs it, its export sourced.
mkdir -p "$work/bare"
for i in $(seq 1 "$children"); do git clone -q "file://$work/children/c$i" "$work/bare/c$i"; done
cat > "$work/bare.sh" << 'BARE'
#!/usr/bin/env bash
set -e
build=$1 cache=$2 env=$3
shift 3
for dir in "$@"; do
  (cd "$dir" && bin/detect "$build" > /dev/null)
  (cd "$dir" && bin/compile "$build" "$cache" "$env")
  if [ -f "$dir/export" ]; then source "$dir/export"; fi
  (cd "$dir" && bin/release "$build" > /dev/null)
done
BARE
chmod +x "$work/bare.sh"
bare_dirs=()
for i in $(seq 1 "$children"); do bare_dirs+=("$work/bare/c$i"); done
: > "$work/mp-cpu" && : > "$work/bare-cpu"
for _ in $(seq 1 "$runs"); do
  cpu_of "$work/multipack/bin/compile" "$work/build" "$work/cache" "$work/env" >> "$work/mp-cpu"
  cpu_of "$work/bare.sh" "$work/build" "$work/cache" "$work/env" "${bare_dirs[@]}" >> "$work/bare-cpu"
done
mp_cpu=$(median < "$work/mp-cpu")
bare_cpu=$(median < "$work/bare-cpu")
awk -v m="$mp_cpu" -v b="$bare_cpu" 'BEGIN {
  printf "warm CPU (user+sys, median, alternating): multipack %.1f ms, the children bare %.1f ms: %.2fx (budget <= 1.5x: %s)\n",
    m * 1000, b * 1000, m / b, (m / b <= 1.5) ? "met" : "NOT met"
}'

# SPEC §18: against the bash heroku-buildpack-multi, which clones every child on every build; the
# two builds alternate, so that what else the machine does weighs on both alike.
if [ -n "${MULTI_BUILDPACK:-}" ] && [ -x "$MULTI_BUILDPACK/bin/compile" ]; then
  mkdir -p "$work/multi-build" "$work/multi-cache" "$work/multi-tmp"
  cp "$work/build/.buildpacks" "$work/multi-build/"
  wall_of() {
    local start end
    start=${EPOCHREALTIME/[.,]/}
    "$@" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
    end=${EPOCHREALTIME/[.,]/}
    awk -v s="$start" -v e="$end" 'BEGIN {printf "%.6f\n", (e - s) / 1e6}'
  }
  : > "$work/ours" && : > "$work/theirs"
  for _ in $(seq 1 "$runs"); do
    wall_of "$work/multipack/bin/compile" "$work/build" "$work/cache" "$work/env" >> "$work/ours"
    # Its clones go to `mktemp -t` and are never removed: TMPDIR is the work directory's, which goes.
    TMPDIR="$work/multi-tmp" wall_of "$MULTI_BUILDPACK/bin/compile" "$work/multi-build" "$work/multi-cache" "$work/env" \
      >> "$work/theirs"
  done
  ours=$(median < "$work/ours")
  theirs=$(median < "$work/theirs")
  awk -v m="$ours" -v b="$theirs" 'BEGIN {
    printf "warm wall (median, alternating): multipack %.1f ms, heroku-buildpack-multi %.1f ms: %.2fx (budget <= 0.25x: %s)\n",
      m * 1000, b * 1000, m / b, (m / b <= 0.25) ? "met" : "NOT met"
  }'
else
  echo "heroku-buildpack-multi: not measured (set MULTI_BUILDPACK to a checkout of it)"
fi

# The same on a private tmpfs, where no file system history weighs on making files.
if [ -z "${OVERHEAD_ON:-}" ] && unshare -Urm true 2> /dev/null; then
  echo
  mkdir "$work/tmpfs"
  OVERHEAD_ON="a private tmpfs" MULTIPACK="$binary" TMPDIR="$work/tmpfs" unshare -Urm bash -c \
    'mount -t tmpfs tmpfs "$TMPDIR" && exec "$0" "$@"' "$0" "$children" "$runs"
fi
