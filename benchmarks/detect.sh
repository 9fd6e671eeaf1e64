#!/usr/bin/env bash
# bin/detect's budget (SPEC §18): no binary started, ≤ 5 ms. Runs the shim as Heroku does, on an
# app with .buildpacks and on one with an app.json "buildpacks" list, from a buildpack with no
# binary and no PATH (so that anything detect tried to start or download would fail), and prints
# the median and quartiles of the wall time, measured with bash's own clock around each run.
#   benchmarks/detect.sh [runs=201]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-201}"
work="$(mktemp -d "${TMPDIR:-/tmp}/multipack-detect-XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/buildpack" "$work/list" "$work/json"
cp -R bin lib "$work/buildpack/"
printf 'heroku/nodejs\nheroku/python\n' > "$work/list/.buildpacks"
printf '{"name": "app", "buildpacks": [{"url": "heroku/nodejs"}, {"url": "heroku/python"}]}\n' > "$work/json/app.json"
failed=0
for app in list json; do
  env -i PATH=/nonexistent "$work/buildpack/bin/detect" "$work/$app" > "$work/out" 2>&1 ||
    { echo " !     bin/detect failed on the $app app: $(cat "$work/out")"; exit 1; }
  [ "$(cat "$work/out")" = Multipack ] || { echo " !     bin/detect printed $(cat "$work/out")"; exit 1; }
  [ ! -e "$work/buildpack/vendor" ] || { echo " !     bin/detect wrote vendor/"; exit 1; }
  times=()
  for _ in $(seq 1 "$runs"); do
    start=$EPOCHREALTIME
    env -i PATH=/nonexistent "$work/buildpack/bin/detect" "$work/$app" > /dev/null
    end=$EPOCHREALTIME
    times+=("$(( (${end/./} - ${start/./}) ))")
  done
  sorted="$(printf '%s\n' "${times[@]}" | sort -n)"
  q() { sed -n "$(( (runs - 1) * $1 / 4 + 1 ))p" <<<"$sorted"; }
  median=$(q 2)
  verdict=ok
  [ "$median" -le 5000 ] || { verdict=OVER; failed=1; }
  printf 'bin/detect, %-11s median %s ms (quartiles %s–%s ms, %s runs; env -i included)  budget 5 ms: %s\n' \
    "$app app:" "$(awk "BEGIN{printf \"%.2f\", $median/1000}")" "$(awk "BEGIN{printf \"%.2f\", $(q 1)/1000}")" \
    "$(awk "BEGIN{printf \"%.2f\", $(q 3)/1000}")" "$runs" "$verdict"
done
exit $failed
