# Sourced by the bin/ shims: finds the multipack binary (SPEC §12) and sets MULTIPACK.
# Bash builtins only (no dirname, no uname): every build calls the shims several times.
# Logs go to stderr: detect's and release's stdout belong to Heroku.
MULTIPACK_BUILDPACK_DIR="${BASH_SOURCE[0]%/lib/*}"
[ "$MULTIPACK_BUILDPACK_DIR" = "${BASH_SOURCE[0]}" ] && MULTIPACK_BUILDPACK_DIR=.
export MULTIPACK_BUILDPACK_DIR
MULTIPACK="$MULTIPACK_BUILDPACK_DIR/vendor/multipack-$HOSTTYPE"
if [ ! -x "$MULTIPACK" ]; then
  MULTIPACK="$MULTIPACK_BUILDPACK_DIR/.build/release/multipack"
fi
if [ ! -x "$MULTIPACK" ] && command -v swift >/dev/null 2>&1; then
  echo "=====> Building multipack with swift build -c release (first use of this checkout)" >&2
  (cd "$MULTIPACK_BUILDPACK_DIR" && swift build -c release --product multipack >&2) || {
    echo " !     swift build failed in $MULTIPACK_BUILDPACK_DIR; see its output above." >&2
    exit 1
  }
fi
if [ ! -x "$MULTIPACK" ]; then
  echo " !     multipack's binary is missing from $MULTIPACK_BUILDPACK_DIR and there is no Swift toolchain to build it." >&2
  echo " !     Use a packaged release of multipack (it carries vendor/multipack-$HOSTTYPE), or run swift build -c release in the checkout." >&2
  exit 1
fi
