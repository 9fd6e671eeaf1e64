#!/usr/bin/env bash
# scripts/release.sh VERSION — cuts release VERSION (SPEC §16), in a clean checkout:
#   1. sets `version` in buildpack.toml and commits it (unless it already says VERSION);
#   2. builds and packages the static binary with `multipack package` into dist/
#      (multipack.tgz, multipack-<arch>, SHA256SUMS): the assets to upload;
#   3. writes the binary's sha256_<arch> into buildpack.toml, commits it and tags that commit
#      vVERSION, so that `heroku buildpacks:set https://github.com/<org>/multipack#vVERSION` can
#      download and verify the binary on a build image without Swift.
# The binary reports the commit it was built from: the one before the digest commit.
# When vVERSION already tags HEAD (the release workflow runs on a pushed tag), the tag is moved to
# the digest commit. Environment: MULTIPACK (a multipack binary to package with; default: built
# here), MULTIPACK_PACKAGE_SCRATCH (SwiftPM's scratch directory for the release build).
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
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
  die "The checkout has uncommitted changes; commit or stash them first (a release is built from a commit)."
if git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
  [ "$(git rev-parse "$tag^{commit}")" = "$(git rev-parse HEAD)" ] ||
    die "The tag $tag exists and is not HEAD; check out $tag (or delete the tag) first."
fi
arch="$(uname -m)"

# toml_set TABLE KEY VALUE: sets KEY = "VALUE" under [TABLE] of buildpack.toml, adding the line at
# the end of the table when it is not there.
toml_set() {
  awk -v table="[$1]" -v key="$2" -v value="$3" '
    function emit() { print key " = \"" value "\""; done = 1 }
    /^[[:space:]]*\[/ {
      if (inside && !done) emit()
      inside = ($0 == table)
    }
    inside && !done && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { emit(); next }
    { print }
    END { if (inside && !done) emit(); if (!done) exit 1 }
  ' buildpack.toml > buildpack.toml.new || { rm -f buildpack.toml.new; die "buildpack.toml has no [$1] table."; }
  mv buildpack.toml.new buildpack.toml
}
toml_get() { sed -n "/^\[$1\]/,/^\[/s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" buildpack.toml | head -n 1; }

if [ "$(toml_get buildpack version)" != "$version" ]; then
  echo "=====> Setting version $version in buildpack.toml"
  toml_set buildpack version "$version"
  git commit -q -m "multipack $version" buildpack.toml
fi
source_commit="$(git rev-parse HEAD)"

multipack="${MULTIPACK:-}"
if [ -z "$multipack" ]; then
  echo "=====> Building multipack to package with"
  swift build --product multipack >&2
  multipack="$(swift build --show-bin-path)/multipack"
fi
mkdir -p dist
scratch=()
[ -n "${MULTIPACK_PACKAGE_SCRATCH:-}" ] && scratch=(--scratch-path "$MULTIPACK_PACKAGE_SCRATCH")
"$multipack" package --source "$root" --output "dist/multipack.tgz" --binary "dist/multipack-$arch" "${scratch[@]}"
read -r digest _ < <(sha256sum "dist/multipack-$arch")
(cd dist && sha256sum multipack.tgz "multipack-$arch" > SHA256SUMS)

echo "=====> Writing sha256_$arch into buildpack.toml"
toml_set metadata.multipack "sha256_$arch" "$digest"
git commit -q -m "multipack $version: sha256 of the $arch binary" buildpack.toml
git tag -f "$tag" >/dev/null
echo "=====> Tagged $tag ($(git rev-parse --short HEAD); the binary was built from ${source_commit:0:12})"
echo "       sha256_$arch = \"$digest\""
echo "       Assets to upload to the $tag release: dist/multipack.tgz dist/multipack-$arch dist/SHA256SUMS"
echo "       Then: git push origin $tag (and the branch), and attach the assets to the release."
