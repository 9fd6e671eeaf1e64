#!/usr/bin/env bash
# The packaged buildpack's budgets (SPEC §18, docs/benchmarks.md): the archive's size (the stripped
# binary's is shown beside it), bin/detect's median wall time, dynamic dependencies and the newest
# glibc symbol version. Packages the checkout first unless given an archive. Exits non-zero when a
# budget is broken.
#   scripts/check-budgets.sh [ARCHIVE.tgz]
set -euo pipefail
cd "$(dirname "$0")/.."
max_archive_bytes=$((8 * 1000 * 1000))
max_detect_ms=5
max_glibc=2.35
allowed='^(linux-vdso|libc|libm|libstdc\+\+|libgcc_s|libcurl|liblzma|libz|ld-linux-[a-z0-9-]+)\.so'

work="$(mktemp -d /tmp/multipack-budgets-XXXXXX)"
trap 'rm -rf "$work"' EXIT
archive="${1:-}"
if [ -z "$archive" ]; then
  archive="$work/multipack.tgz"
  swift build --product multipack >&2
  .build/debug/multipack package --output "$archive" >&2
fi
mkdir "$work/bp"
tar xzf "$archive" -C "$work/bp"
binary="$work/bp/vendor/multipack-$(uname -m)"
failed=0
report() {
  printf '%-36s %-60s %s\n' "$1" "$2" "$3"
  [ "$3" = ok ] || failed=1
}

size=$(stat -c %s "$archive")
binary_size=$(stat -c %s "$binary")
report "archive size (≤ 8 MB)" "$(awk "BEGIN{printf \"%.2f MB (stripped binary %.2f MB)\", $size/1e6, $binary_size/1e6}")" \
  "$([ "$size" -le $max_archive_bytes ] && echo ok || echo OVER)"

# bin/detect on an app, through the shim, as Heroku runs it (bash alone; benchmarks/detect.sh has more).
app="$work/app"
mkdir "$app"
printf 'heroku/nodejs\nheroku/python\n' > "$app/.buildpacks"
for _ in 1 2 3; do "$work/bp/bin/detect" "$app" > /dev/null; done
if command -v hyperfine > /dev/null; then
  hyperfine -N --warmup 5 --runs 60 --export-json "$work/h.json" "$work/bp/bin/detect $app" > /dev/null 2>&1
  median_us=$(sed -n 's/.*"median": *\([0-9.e-]*\).*/\1/p' "$work/h.json" | head -1 | awk '{printf "%d", $1*1e6}')
  how="hyperfine, 60 runs"
else
  times=()
  for _ in $(seq 1 41); do
    start=$EPOCHREALTIME
    "$work/bp/bin/detect" "$app" > /dev/null
    end=$EPOCHREALTIME
    times+=($(( ${end/./} - ${start/./} )))
  done
  median_us=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 21p)
  how="bash clock, 41 runs"
fi
report "bin/detect median (≤ ${max_detect_ms} ms)" "$(awk "BEGIN{printf \"%.1f ms\", $median_us/1000}") ($how)" \
  "$([ "$median_us" -le $((max_detect_ms * 1000)) ] && echo ok || echo OVER)"

# libcurl.so.4 (downloads) and libcrypto (SHA-256) are loaded with dlopen on first use: not in ldd.
deps=$(ldd "$binary" | awk '{print $1}' | sed 's|.*/||')
bad=$(printf '%s\n' "$deps" | grep -Ev "$allowed" || true)
report "dynamic dependencies (ldd)" "$(printf '%s\n' "$deps" | sed 's|\.so.*||' | tr '\n' ' ')" \
  "$([ -z "$bad" ] && echo ok || echo "NOT ALLOWED: $bad")"

newest=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
symbols=$(objdump -T "$binary" | grep -F "(GLIBC_$newest)" | awk '{print $NF}' | sort -u | tr '\n' ' ')
report "newest glibc symbol (≤ GLIBC_$max_glibc)" "GLIBC_$newest: $symbols" \
  "$([ "$(printf '%s\n%s\n' "$newest" "$max_glibc" | sort -V | tail -1)" = "$max_glibc" ] && echo ok || echo TOO_NEW)"
exit $failed
