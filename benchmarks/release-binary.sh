# Sourced by the benchmarks (after they set $root): $MULTIPACK is the binary as it ships, release
# with Swift's standard library linked statically, built into .build-static unless MULTIPACK
# already names one.
if [ -z "${MULTIPACK:-}" ]; then
  swift build -c release --product multipack --static-swift-stdlib --package-path "$root" --scratch-path "$root/.build-static" >&2
  MULTIPACK="$root/.build-static/release/multipack"
fi
