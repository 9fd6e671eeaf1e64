# Sourced by locate-multipack.sh when the buildpack has no binary yet (a git checkout, as Heroku
# fetches `heroku buildpacks:set https://github.com/…#vX.Y.Z`): downloads the release binary named
# in buildpack.toml (or MULTIPACK_BINARY_URL), checks it against the sha256 listed there (or
# MULTIPACK_BINARY_SHA256) and keeps it as vendor/multipack-$HOSTTYPE for the next shim call; else
# builds it with swift; else says what to do. Sets MULTIPACK or exits 1. Runs once per buildpack
# directory.

# multipack_toml TABLE KEY VAR: VAR = the string KEY = "…" under [TABLE] in buildpack.toml.
multipack_toml() {
  local table="" line key value
  printf -v "$3" '%s' ""
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in
      "["*) table="${line#[}"; table="${table%%]*}" ;;
      *=*)
        [ "$table" = "$1" ] || continue
        key="${line%%=*}"; key="${key%"${key##*[![:space:]]}"}"
        [ "$key" = "$2" ] || continue
        value="${line#*=}"; value="${value#"${value%%[![:space:]]*}"}"
        value="${value#\"}"; value="${value%%\"*}"
        printf -v "$3" '%s' "$value"
        return 0 ;;
    esac
  done < "$MULTIPACK_BUILDPACK_DIR/buildpack.toml"
  return 1
}

# The URL with its userinfo and query values masked, as multipack masks every URL it prints.
multipack_masked_url() {
  local url="$1" rest
  if [[ "$url" == *://*@* ]]; then
    rest="${url#*://}"
    [[ "${rest%%/*}" == *@* ]] && url="${url%%://*}://***@${rest#*@}"
  fi
  [[ "$url" == *\?* ]] && url="${url%%\?*}?***"
  printf '%s' "$url"
}

# Downloads, verifies and installs the binary. Returns 1 with MULTIPACK_DOWNLOAD_PROBLEM set when
# there is nothing to download or the download failed; exits when the digest does not match.
multipack_download() {
  local version template expected url shown target temporary problem actual
  multipack_toml buildpack version version
  multipack_toml metadata.multipack binary_url template
  multipack_toml metadata.multipack "sha256_$HOSTTYPE" expected
  template="${MULTIPACK_BINARY_URL:-$template}"
  expected="${MULTIPACK_BINARY_SHA256:-$expected}"
  if [ -z "$template" ]; then
    MULTIPACK_DOWNLOAD_PROBLEM="buildpack.toml names no binary_url to download it from"
    return 1
  fi
  url="${template//\{version\}/$version}"
  url="${url//\{arch\}/$HOSTTYPE}"
  shown="$(multipack_masked_url "$url")"
  if [ -z "$expected" ]; then
    MULTIPACK_DOWNLOAD_PROBLEM="this checkout is not a release: buildpack.toml lists no sha256_$HOSTTYPE to check a download from $shown against"
    return 1
  fi
  if ! [[ "$expected" =~ ^[0-9a-fA-F]{64}$ ]]; then
    MULTIPACK_DOWNLOAD_PROBLEM="the sha256 to check $shown against is not 64 hex digits (MULTIPACK_BINARY_SHA256 or sha256_$HOSTTYPE in buildpack.toml)"
    return 1
  fi
  expected="${expected,,}"
  target="$MULTIPACK_BUILDPACK_DIR/vendor/multipack-$HOSTTYPE"
  temporary="$MULTIPACK_BUILDPACK_DIR/vendor/.multipack-$HOSTTYPE.download.$$"
  echo "=====> Downloading multipack $version for $HOSTTYPE from $shown" >&2
  if ! mkdir -p "$MULTIPACK_BUILDPACK_DIR/vendor" 2>/dev/null; then
    MULTIPACK_DOWNLOAD_PROBLEM="$MULTIPACK_BUILDPACK_DIR/vendor cannot be created"
    return 1
  fi
  # Only the verified file is ever renamed to the name the shims run.
  if ! problem="$(curl --fail --silent --show-error --location --connect-timeout 10 --max-time 300 \
      --retry 3 --retry-delay 2 --output "$temporary" "$url" 2>&1)"; then
    rm -f "$temporary"
    problem="${problem//"$url"/$shown}"
    MULTIPACK_DOWNLOAD_PROBLEM="the download from $shown failed: ${problem:-curl failed}"
    return 1
  fi
  read -r actual _ < <(sha256sum "$temporary")
  if [ "$actual" != "$expected" ]; then
    rm -f "$temporary"
    echo " !     The multipack binary downloaded from $shown is not the one buildpack.toml lists." >&2
    echo " !     Expected sha256 $expected (sha256_$HOSTTYPE for version $version), got $actual." >&2
    echo " !     It was deleted, not run. If you set MULTIPACK_BINARY_URL or MULTIPACK_BINARY_SHA256, check that they" >&2
    echo " !     name the same release binary; otherwise use the release archive, which carries the binary:" >&2
    echo " !     heroku buildpacks:set https://github.com/<org>/multipack/releases/download/v$version/multipack.tgz" >&2
    exit 1
  fi
  chmod 755 "$temporary" && mv -f "$temporary" "$target" || {
    rm -f "$temporary"
    MULTIPACK_DOWNLOAD_PROBLEM="the verified binary could not be saved as $target"
    return 1
  }
  MULTIPACK="$target"
}

MULTIPACK_DOWNLOAD_PROBLEM=""
if ! multipack_download; then
  if command -v swift >/dev/null 2>&1; then
    echo "=====> Building multipack with swift build -c release ($MULTIPACK_DOWNLOAD_PROBLEM)" >&2
    (cd "$MULTIPACK_BUILDPACK_DIR" && swift build -c release --product multipack >&2) || {
      echo " !     swift build failed in $MULTIPACK_BUILDPACK_DIR; see its output above." >&2
      exit 1
    }
    MULTIPACK="$MULTIPACK_BUILDPACK_DIR/.build/release/multipack"
  else
    {
      echo
      echo " !     multipack has no binary for $HOSTTYPE in $MULTIPACK_BUILDPACK_DIR, and cannot get one:"
      echo " !     $MULTIPACK_DOWNLOAD_PROBLEM, and there is no Swift toolchain to build it."
      echo " !     Either use the release archive, which carries the binary:"
      echo " !       heroku buildpacks:set https://github.com/<org>/multipack/releases/download/v<version>/multipack.tgz"
      echo " !     or a release tag (https://github.com/<org>/multipack#v<version>), whose buildpack.toml lists the"
      echo " !     binary's sha256; or set both MULTIPACK_BINARY_URL (a copy of the release binary for $HOSTTYPE)"
      echo " !     and MULTIPACK_BINARY_SHA256 (its sha256) in the environment."
      echo
    } >&2
    exit 1
  fi
fi
