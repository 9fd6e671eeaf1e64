# Sourced by locate-multipack.sh when the buildpack has no binary: a git checkout, which is what
# `heroku buildpacks:set https://github.com/multipack/multipack[#vX.Y.Z]` gives Heroku. $1 is
# CACHE_DIR and $2 ENV_DIR where the verb has them (compile and test-compile do).
# The binary is the release that buildpack.toml names ([metadata.multipack]: binary_url and
# sha256_<arch>), or the one the config vars (or the environment) MULTIPACK_BINARY_URL and
# MULTIPACK_BINARY_SHA256 name. It is taken from CACHE_DIR/.multipack/bin/<sha256>, where an earlier
# deploy kept it, or downloaded; it runs only once its sha256 matches, and is then kept by digest in
# the cache (for the next deploy) and as vendor/multipack-<arch> (for this build's later verbs).
# A binary whose digest differs is deleted, never run, and nothing is kept. Without a release to
# download, it is built with swift when a toolchain is on PATH; else the message says what to do.
# Sets MULTIPACK or exits 1.

multipack_cache_dir="$1"
multipack_env_dir="$2"

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

# multipack_setting NAME VAR: VAR = the config var NAME (its file in ENV_DIR), else the
# environment's NAME; surrounding blanks and line ends trimmed, as multipack trims every setting.
multipack_setting() {
  local value=""
  # -f: a FIFO or a directory in ENV_DIR is not a config var, and is never opened.
  if [ -n "$multipack_env_dir" ] && [ -f "$multipack_env_dir/$1" ]; then
    IFS= read -r -d '' value < "$multipack_env_dir/$1"
  fi
  [ -n "$value" ] || value="${!1-}"
  value="${value#"${value%%[![:space:]]*}"}"
  value="${value%"${value##*[![:space:]]}"}"
  printf -v "$2" '%s' "$value"
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

# multipack_sha256 FILE VAR: VAR = the file's sha256 (empty when it cannot be read).
multipack_sha256() {
  local digest _
  read -r digest _ < <(sha256sum -- "$1" 2>/dev/null)
  printf -v "$2" '%s' "$digest"
}

# multipack_cache_bin VAR: VAR = CACHE_DIR/.multipack/bin when it can be used: real directories
# or none yet, never a symlink (the children share CACHE_DIR, and nothing in it is trusted).
multipack_cache_bin() {
  local dir
  printf -v "$1" '%s' ""
  [ -n "$multipack_cache_dir" ] && [ -d "$multipack_cache_dir" ] || return 1
  for dir in "$multipack_cache_dir/.multipack" "$multipack_cache_dir/.multipack/bin"; do
    [ ! -L "$dir" ] && { [ -d "$dir" ] || [ ! -e "$dir" ]; } || return 1
  done
  printf -v "$1" '%s' "$dir"
}

# multipack_keep FILE CACHE DIGEST: a copy of the verified FILE becomes CACHE/DIGEST, written under
# a temporary name and renamed; the binaries of other releases and what killed deploys left go.
multipack_keep() {
  local entry pid
  mkdir -p "$2" 2>/dev/null && cp -- "$1" "$2/.partial-$$" 2>/dev/null &&
    mv -fT -- "$2/.partial-$$" "$2/$3" 2>/dev/null || { rm -f -- "$2/.partial-$$"; return 1; }
  for entry in "$2"/* "$2"/.partial-*; do
    case "${entry##*/}" in
      "$3" | "*" | ".partial-*") ;;
      .partial-*) pid="${entry##*/.partial-}"; [ -d "/proc/$pid" ] || rm -f -- "$entry" ;;
      *) rm -rf -- "$entry" ;;
    esac
  done
}

# Finds, checks and installs the binary. Returns 1 with MULTIPACK_PROBLEM set when there is none to
# download or the download failed; exits when a binary's digest does not match.
multipack_obtain() {
  local version template expected url shown from origin vendor partial cache actual problem
  multipack_toml buildpack version version
  multipack_toml metadata.multipack binary_url template
  multipack_toml metadata.multipack "sha256_$HOSTTYPE" expected
  origin="sha256_$HOSTTYPE in buildpack.toml"
  multipack_setting MULTIPACK_BINARY_URL url
  template="${url:-$template}"
  multipack_setting MULTIPACK_BINARY_SHA256 from
  [ -n "$from" ] && expected="$from" origin="the config var MULTIPACK_BINARY_SHA256"
  if [ -z "$template" ]; then
    MULTIPACK_PROBLEM="buildpack.toml names no binary_url to download it from"
    return 1
  fi
  url="${template//\{version\}/$version}"
  url="${url//\{arch\}/$HOSTTYPE}"
  shown="$(multipack_masked_url "$url")"
  if [ -z "$expected" ]; then
    MULTIPACK_PROBLEM="buildpack.toml lists no sha256_$HOSTTYPE to check a download from $shown against (this commit names no release), and the config var MULTIPACK_BINARY_SHA256 is not set"
    return 1
  fi
  if ! [[ "$expected" =~ ^[0-9a-fA-F]{64}$ ]]; then
    MULTIPACK_PROBLEM="the sha256 to check $shown against ($origin) is not 64 hex digits"
    return 1
  fi
  expected="${expected,,}"
  vendor="$MULTIPACK_BUILDPACK_DIR/vendor/multipack-$HOSTTYPE"
  partial="$MULTIPACK_BUILDPACK_DIR/vendor/.multipack-$HOSTTYPE.partial-$$"
  if ! mkdir -p "$MULTIPACK_BUILDPACK_DIR/vendor" 2>/dev/null; then
    MULTIPACK_PROBLEM="$MULTIPACK_BUILDPACK_DIR/vendor cannot be created"
    return 1
  fi
  multipack_cache_bin cache
  # An earlier deploy's copy, checked again: it runs only as the digest it is kept under.
  if [ -n "$cache" ] && [ -f "$cache/$expected" ] && [ ! -L "$cache/$expected" ]; then
    if cp -- "$cache/$expected" "$partial" 2>/dev/null && multipack_sha256 "$partial" actual &&
      [ "$actual" = "$expected" ] && chmod 755 "$partial" && mv -f -- "$partial" "$vendor"; then
      echo "=====> Using multipack $version for $HOSTTYPE from the cache (sha256 ${expected:0:12})" >&2
      MULTIPACK="$vendor"
      return 0
    fi
    rm -f -- "$partial" "$cache/$expected"
    echo " !     The multipack binary kept in CACHE_DIR was changed on disk: it was deleted, and is downloaded again." >&2
  fi
  echo "=====> Downloading multipack $version for $HOSTTYPE from $shown" >&2
  # Only a verified file is ever renamed to the name the shims run.
  if ! problem="$(curl --fail --silent --show-error --location --connect-timeout 10 --max-time 300 \
      --retry 3 --retry-delay 2 --output "$partial" "$url" 2>&1)"; then
    rm -f -- "$partial"
    problem="${problem//"$url"/$shown}"
    MULTIPACK_PROBLEM="the download from $shown failed: ${problem:-curl failed}"
    return 1
  fi
  multipack_sha256 "$partial" actual
  if [ "$actual" != "$expected" ]; then
    rm -f -- "$partial"
    echo " !     The multipack binary downloaded from $shown is not the one expected:" >&2
    echo " !     $origin says sha256 $expected, the download is $actual." >&2
    echo " !     It was deleted, not run, and nothing was kept. If you set the config var MULTIPACK_BINARY_URL or" >&2
    echo " !     MULTIPACK_BINARY_SHA256, check that both name the same release binary for $HOSTTYPE; or deploy the" >&2
    echo " !     release archive, which carries its binary:" >&2
    echo " !       heroku buildpacks:set https://github.com/multipack/multipack/releases/download/v$version/multipack.tgz" >&2
    exit 1
  fi
  [ -z "$cache" ] || multipack_keep "$partial" "$cache" "$expected" ||
    echo "       (CACHE_DIR/.multipack/bin cannot be written: the next deploy downloads it again)" >&2
  if ! { chmod 755 "$partial" && mv -f -- "$partial" "$vendor"; }; then
    rm -f -- "$partial"
    MULTIPACK_PROBLEM="the verified binary could not be saved as $vendor"
    return 1
  fi
  MULTIPACK="$vendor"
}

MULTIPACK_PROBLEM=""
if ! multipack_obtain; then
  if command -v swift >/dev/null 2>&1; then
    echo "=====> Building multipack with swift build -c release ($MULTIPACK_PROBLEM)" >&2
    (cd "$MULTIPACK_BUILDPACK_DIR" && swift build -c release --product multipack >&2) || {
      echo " !     swift build failed in $MULTIPACK_BUILDPACK_DIR; see its output above." >&2
      exit 1
    }
    MULTIPACK="$MULTIPACK_BUILDPACK_DIR/.build/release/multipack"
  else
    multipack_toml buildpack version multipack_version
    {
      echo
      echo " !     multipack has no binary for $HOSTTYPE in $MULTIPACK_BUILDPACK_DIR, and cannot get one:"
      echo " !     $MULTIPACK_PROBLEM, and there is no Swift toolchain to build it."
      echo " !     Deploy the default branch or a release tag, whose buildpack.toml names a released binary:"
      echo " !       heroku buildpacks:set https://github.com/multipack/multipack"
      echo " !       heroku buildpacks:set https://github.com/multipack/multipack#v${multipack_version:-<version>}"
      echo " !     or the release archive, which carries the binary:"
      echo " !       heroku buildpacks:set https://github.com/multipack/multipack/releases/download/v${multipack_version:-<version>}/multipack.tgz"
      echo " !     or set the config vars MULTIPACK_BINARY_URL (where a copy of the release binary for $HOSTTYPE is)"
      echo " !     and MULTIPACK_BINARY_SHA256 (its sha256): heroku config:set MULTIPACK_BINARY_URL=… MULTIPACK_BINARY_SHA256=…"
      echo
    } >&2
    exit 1
  fi
fi
