# Sourced by the bin/ shims but detect, with CACHE_DIR and ENV_DIR as $1 and $2 where the verb has
# them (empty otherwise): finds the multipack binary (SPEC §16) and sets MULTIPACK.
# Bash builtins only (no dirname, no uname): every build calls the shims several times, and the
# usual case (a packaged binary, or the one compile downloaded) is one test.
# Logs go to stderr: release's and report's stdout belong to Heroku.
# The shims name /bin/bash, which every Heroku stack has: `#!/usr/bin/env bash` searched PATH for
# it and cost each call 1.2 ms more.
MULTIPACK_BUILDPACK_DIR="${BASH_SOURCE[0]%/lib/*}"
[ "$MULTIPACK_BUILDPACK_DIR" = "${BASH_SOURCE[0]}" ] && MULTIPACK_BUILDPACK_DIR=.
MULTIPACK_BUILDPACK_DIR="${MULTIPACK_BUILDPACK_DIR%/bin/..}"  # the shims source it as bin/../lib/…
export MULTIPACK_BUILDPACK_DIR
# What these scripts ask of the binary (the verbs and their arguments, these variables), and the
# first release that speaks it: PROTOCOL@VERSION. A binary that does not know the protocol says
# which release to use. Change the protocol only with a release (docs/releasing.md).
export MULTIPACK_SHIM_PROTOCOL=1@0.1.0
MULTIPACK="$MULTIPACK_BUILDPACK_DIR/vendor/multipack-$HOSTTYPE"
if [ ! -x "$MULTIPACK" ]; then
  MULTIPACK="$MULTIPACK_BUILDPACK_DIR/.build/release/multipack"
  # Not packaged, not built: the release binary buildpack.toml names, or a build, or what to do.
  [ -x "$MULTIPACK" ] || source "$MULTIPACK_BUILDPACK_DIR/lib/bootstrap-multipack.sh" "$1" "$2"
fi
