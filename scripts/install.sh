#!/usr/bin/env bash
# scripts/install.sh [DIR] — installs the multipack command from this checkout: a release build
# (the Swift standard library linked statically, as `multipack package` builds it, the version
# and commit stamped in) copied to DIR/multipack. DIR is /usr/local/bin for root and ~/.local/bin
# otherwise, and must be on PATH. MULTIPACK_INSTALL_FROM=FILE installs that binary instead of
# building one (a release asset you downloaded, or the tests' own).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
die() { echo " !     $*" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then default=/usr/local/bin; else default="$HOME/.local/bin"; fi
dir="${1:-$default}"
dir="${dir%/}"
case ":$PATH:" in
  *":$dir:"*) ;;
  *) die "$dir is not on PATH: add it (export PATH=\"$dir:\$PATH\", in ~/.profile to keep it), or give a directory that is: scripts/install.sh DIR" ;;
esac

binary="${MULTIPACK_INSTALL_FROM:-}"
if [ -z "$binary" ]; then
  # The scratch directory `multipack package` uses, so that packaging after installing (or the
  # other way round) only relinks.
  scratch=.build-package
  version="$(sed -n '/^\[buildpack\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' buildpack.toml | head -n 1)"
  commit="$(git rev-parse -q --verify HEAD 2>/dev/null || true)"
  if [ -n "$commit" ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then commit+=-dirty; fi
  # The stamp `multipack --version` reads, as Packager.stampSource writes it.
  mkdir -p "$scratch/multipack-stamp"
  stamp="const char multipack_stamp[] = \"version=${version:-unknown}\\ncommit=$commit\\n\";"
  if [ "$(cat "$scratch/multipack-stamp/stamp.c" 2>/dev/null)" != "$stamp" ] || [ ! -f "$scratch/multipack-stamp/stamp.o" ]; then
    printf '%s\n' "$stamp" > "$scratch/multipack-stamp/stamp.c"
    clang -c -O2 -fPIC -o "$scratch/multipack-stamp/stamp.o" "$scratch/multipack-stamp/stamp.c"
    # SwiftPM does not see a linker input change: without its output it has to link again.
    rm -f "$(swift build -c release --scratch-path "$scratch" --show-bin-path)/multipack"
  fi
  echo "=====> Building multipack ${version:-} (release, static Swift standard library; minutes the first time)" >&2
  swift build -c release --product multipack --static-swift-stdlib -Xswiftc -Osize --scratch-path "$scratch" \
    -Xlinker "$PWD/$scratch/multipack-stamp/stamp.o" >&2
  binary="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/multipack"
fi
[ -x "$binary" ] || die "$binary is not an executable."
mkdir -p "$dir"
# Written beside and renamed, so that a multipack running from there is never overwritten.
install -m 755 "$binary" "$dir/.multipack.partial-$$"
mv -f "$dir/.multipack.partial-$$" "$dir/multipack"
echo "=====> Installed $dir/multipack: $("$dir/multipack" --version)"
