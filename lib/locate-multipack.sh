# Sourced by the bin/ shims: finds the multipack binary (SPEC §12) and sets MULTIPACK.
# Bash builtins only (no dirname, no uname): every build calls the shims several times, and the
# usual case (a packaged or already downloaded binary) is one test.
# Logs go to stderr: detect's and release's stdout belong to Heroku.
# The shims name /bin/bash, which every Heroku stack has: `#!/usr/bin/env bash` searched PATH for
# it and cost each call 1.2 ms more.
MULTIPACK_BUILDPACK_DIR="${BASH_SOURCE[0]%/lib/*}"
[ "$MULTIPACK_BUILDPACK_DIR" = "${BASH_SOURCE[0]}" ] && MULTIPACK_BUILDPACK_DIR=.
MULTIPACK_BUILDPACK_DIR="${MULTIPACK_BUILDPACK_DIR%/bin/..}"  # the shims source it as bin/../lib/…
export MULTIPACK_BUILDPACK_DIR
MULTIPACK="$MULTIPACK_BUILDPACK_DIR/vendor/multipack-$HOSTTYPE"
if [ ! -x "$MULTIPACK" ]; then
  MULTIPACK="$MULTIPACK_BUILDPACK_DIR/.build/release/multipack"
  # Not packaged, not built: download the release binary, or build it, or say what to do.
  [ -x "$MULTIPACK" ] || source "$MULTIPACK_BUILDPACK_DIR/lib/bootstrap-multipack.sh"
fi
