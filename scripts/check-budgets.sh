#!/usr/bin/env bash
# The packaged binary's budgets (README "Installing and releasing"): stripped size, detect's median
# wall time, dynamic dependencies and the newest glibc symbol version. Packages the checkout first
# unless given an archive. Exits non-zero when a budget is broken.
#   scripts/check-budgets.sh [ARCHIVE.tgz]
set -euo pipefail
cd "$(dirname "$0")/.."
max_bytes=$((16 * 1000 * 1000))
max_detect_ms=15
max_glibc=2.35
allowed='^(linux-vdso|libc|libm|libstdc\+\+|libgcc_s|libcurl|liblzma|libz|ld-linux-[a-z0-9-]+)\.so'

work="$(mktemp -d /tmp/multipack-budgets-XXXXXX)"
trap 'rm -rf "$work"' EXIT
archive="${1:-}"
if [ -z "$archive" ]; then
  archive="$work/multipack.tgz"
  swift build -c debug --product multipack --scratch-path .build-package-cli >&2
  .build-package-cli/debug/multipack package --output "$archive" >&2
fi
mkdir "$work/bp"
tar xzf "$archive" -C "$work/bp"
binary="$work/bp/vendor/multipack-$(uname -m)"
failed=0
report() { printf '%-34s %-28s %s\n' "$1" "$2" "$3"; [ "$3" = ok ] || failed=1; }

size=$(stat -c %s "$binary")
report "stripped size" "$(awk "BEGIN{printf \"%.2f MB\", $size/1e6}") (≤ 16 MB)" "$([ "$size" -le $max_bytes ] && echo ok || echo OVER)"

# detect on a fixture app, through the shim, as Heroku runs it.
app="$work/app"
mkdir "$app"
printf 'heroku/nodejs\nheroku/python\n' > "$app/.buildpacks"
for _ in 1 2 3; do "$work/bp/bin/detect" "$app" >/dev/null; done
times=()
for _ in $(seq 1 41); do
  start=$(date +%s%N)
  "$work/bp/bin/detect" "$app" >/dev/null
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000 )))
done
median_us=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 21p)
report "detect median (41 runs, via shim)" "$(awk "BEGIN{printf \"%.1f ms\", $median_us/1000}") (≤ $max_detect_ms ms)" \
  "$([ "$median_us" -le $((max_detect_ms * 1000)) ] && echo ok || echo OVER)"
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 5 --runs 50 --export-json "$work/h.json" "$work/bp/bin/detect $app" >/dev/null 2>&1 &&
    report "detect median (hyperfine)" "$(python3 -c "import json;print('%.1f ms'%(json.load(open('$work/h.json'))['results'][0]['median']*1000))" 2>/dev/null || echo '?')" ok
fi

deps=$(ldd "$binary" | awk '{print $1}')
bad=$(printf '%s\n' "$deps" | sed 's|.*/||' | grep -Ev "$allowed" || true)
report "dynamic dependencies" "$(printf '%s' "$deps" | sed 's|.*/||; s|\.so.*||' | tr '\n' ' ')" "$([ -z "$bad" ] && echo ok || echo "NOT ALLOWED: $bad")"
# dlopen'ed on first use, so not in ldd: libcurl.so.4 (downloads), libcrypto.so.3 (sha256 pins).

newest=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
worst=$(objdump -T "$binary" | grep "GLIBC_$newest" | awk '{print $NF}' | tr '\n' ' ')
report "newest glibc symbol" "GLIBC_$newest ($worst)" \
  "$([ "$(printf '%s\n%s\n' "$newest" "$max_glibc" | sort -V | tail -1)" = "$max_glibc" ] && echo ok || echo TOO_NEW)"
exit $failed
