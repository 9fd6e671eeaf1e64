#!/usr/bin/env bash
# scripts/release.sh VERSION — cuts release VERSION (SPEC §16) in a clean checkout of the default
# branch, at its commit C:
#   1. builds and packages the static binary from C (`multipack package --release VERSION`) into
#      dist/: multipack.tgz, multipack-<arch> and SHA256SUMS, the assets to upload. The binary says
#      it is VERSION, built from C;
#   2. commits the archive's buildpack.toml (VERSION, and the binary's sha256_<arch>) on the branch
#      as C′, the child of C, with the README's deploy lines naming VERSION, and tags C′ vVERSION.
# So the default branch names a released binary from then on, as the tag does: the shims of
# `heroku buildpacks:set https://github.com/multipack/multipack` download it and check its digest.
# Nothing is pushed here: .github/workflows/release.yml pushes the branch and the tag and uploads
# dist/ (docs/releasing.md). Environment: MULTIPACK (a multipack binary to package with; default:
# built here), MULTIPACK_PACKAGE_SCRATCH (SwiftPM's scratch directory for the release build).
set -euo pipefail

die() { echo " !     $*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: scripts/release.sh VERSION   (e.g. 1.2.0)" >&2; exit 2; }
version="${1#v}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] ||
  { echo " !     $1 is not a version: give MAJOR.MINOR.PATCH, e.g. 1.2.0" >&2; exit 2; }
tag="v$version"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
git rev-parse --git-dir >/dev/null 2>&1 || die "$root is not a git checkout."
branch="$(git symbolic-ref -q --short HEAD)" ||
  die "HEAD is not on a branch: check out the default branch (a release commits its buildpack.toml there)."
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
  die "The checkout has uncommitted changes; commit or stash them first (a release is built from a commit)."
! git rev-parse -q --verify "refs/tags/$tag" >/dev/null ||
  die "The tag $tag exists already: choose the next version (a release is never made twice)."
arch="$(uname -m)"
source_commit="$(git rev-parse HEAD)"

multipack="${MULTIPACK:-}"
if [ -z "$multipack" ]; then
  echo "=====> Building multipack to package with"
  swift build --product multipack >&2
  multipack="$(swift build --show-bin-path)/multipack"
fi
rm -rf dist
mkdir -p dist
scratch=()
[ -n "${MULTIPACK_PACKAGE_SCRATCH:-}" ] && scratch=(--scratch-path "$MULTIPACK_PACKAGE_SCRATCH")
"$multipack" package --source "$root" --release "$version" --output dist/multipack.tgz \
  --binary "dist/multipack-$arch" "${scratch[@]}"
(cd dist && sha256sum multipack.tgz "multipack-$arch" > SHA256SUMS)
read -r digest _ < <(sha256sum "dist/multipack-$arch")

echo "=====> Committing buildpack.toml (version $version, sha256_$arch) on $branch, tagged $tag"
tar -xzOf dist/multipack.tgz buildpack.toml > buildpack.toml
grep -q "^sha256_$arch = \"$digest\"$" buildpack.toml || die "The archive's buildpack.toml does not name its binary."
# The README's deploy and install lines name the release the default branch names.
sed -i -E "s#(github\.com/multipack/multipack(\#v|/releases/download/v))[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?#\1$version#g" README.md
git commit -q -m "multipack $version" -m "The release binary, built from ${source_commit:0:12}: sha256_$arch $digest." buildpack.toml README.md
git tag -a -m "multipack $version" "$tag"
echo "=====> Released $tag: $branch is at $(git rev-parse --short HEAD); the binary was built from ${source_commit:0:12}"
echo "       sha256_$arch = \"$digest\""
echo "       Assets to upload to the $tag release: dist/multipack.tgz dist/multipack-$arch dist/SHA256SUMS"
echo "       Then: git push origin $branch $tag (the release workflow does both, and the upload)."
