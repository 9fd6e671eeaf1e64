#!/usr/bin/env bash
# Proves the packaged buildpack is self-contained (SPEC §12), for real: a minimal Debian root made
# with debootstrap (minbase, plus only bash, curl, git and the libraries Heroku's stacks ship), the
# buildpack archive unpacked into it, and a full multi-child build of fixtures/apps/python-node
# (two git children, both app hooks) run inside it with chroot: detect, compile, release, report.
# No Swift toolchain or runtime exists in the root. Slow the first time (the root is kept in
# $MULTIPACK_CHROOT and reused); needs root and Debian's mirror. Not part of CI.
# Then the same root as a stack: `multipack build --stack-root ROOT` of the app, run by an
# unprivileged user (bubblewrap's user namespace; no root for the build itself).
# Nothing is written to /tmp: the root, the archive, the logs and the stack build's directories
# live under /var/tmp (a root of ~350 MB does not belong on a tmpfs), and all but the root go at exit.
#   scripts/verify-chroot.sh [ARCHIVE.tgz]
set -euo pipefail
cd "$(dirname "$0")/.."
root="${MULTIPACK_CHROOT:-/var/tmp/multipack-chroot}"
scratch=$(mktemp -d /var/tmp/multipack-verify-XXXXXX)
chmod 755 "$scratch"
# multipack's own temporary directories (package's staging) go there too.
export TMPDIR="$scratch/tmp"
mkdir "$TMPDIR"
mounted=()
cleanup() {
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
figures=()
# timed NAME COMMAND...: runs it, and keeps its wall time for the figures at the end.
timed() {
  local name="$1" start=$SECONDS
  shift
  "$@"
  figures+=("$name: $((SECONDS - start)) s")
}
mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
suite=bookworm
libraries=libcurl4,liblzma5,zlib1g,libyaml-0-2,libstdc++6,libgcc-s1,libssl3,ca-certificates

# A run that was killed may have left /proc or /dev mounted in the root: never delete through them.
for m in $(awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m" || true; done
if [ ! -x "$root/usr/bin/git" ]; then
  echo "=====> debootstrap --variant=minbase $suite $root $mirror (+ curl git $libraries)"
  rm -rf --one-file-system "$root"
  # debootstrap reads no apt.conf: a proxy apt is told to use has to reach it as http_proxy.
  proxy="$(apt-config shell proxy Acquire::http::Proxy 2>/dev/null | sed -n "s/^proxy='\(.*\)'$/\1/p")"
  timed debootstrap env ${proxy:+http_proxy="$proxy"} debootstrap --variant=minbase --include="curl,git,$libraries" \
    "$suite" "$root" "$mirror" > "$scratch/debootstrap.log" 2>&1 || {
    tail -20 "$scratch/debootstrap.log"
    exit 1
  }
fi

# A root made before libyaml was needed gets it now (every Heroku stack ships it).
if ! ls "$root"/usr/lib/*/libyaml-0.so.2 >/dev/null 2>&1; then
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq libyaml-0-2 > "$scratch/apt.log" 2>&1 || { tail -20 "$scratch/apt.log"; exit 1; }
fi

archive="${1:-}"
if [ -z "$archive" ]; then
  archive="$scratch/multipack.tgz"
  swift build --product multipack >&2
  timed package .build/debug/multipack package --output "$archive" >&2
fi
figures+=("root: $(du -sh "$root" | cut -f1)" "buildpack archive: $(du -h "$archive" | cut -f1)")

echo "=====> The root: $(du -sh "$root" | cut -f1), without Swift: $(chroot "$root" /bin/bash -c 'compgen -c swift; ls -d /usr/lib/swift 2>/dev/null' | tr "\n" " ")(nothing found)"
work=/work-multipack
rm -rf "$root$work"
mkdir -p "$root$work/buildpack" "$root$work/remotes" "$root$work/cache" "$root$work/env"
tar xzf "$archive" -C "$root$work/buildpack"
cp -R fixtures/apps/python-node "$root$work/app"
for child in node python; do
  cp -R "fixtures/buildpacks/$child" "$root$work/remotes/$child"
done
printf '# two git children, as a Heroku app would list them\nfile://%s/remotes/node\nfile://%s/remotes/python#main\n' "$work" "$work" \
  > "$root$work/app/.buildpacks"

for fs in proc dev; do
  mount --bind "/$fs" "$root/$fs" && mounted+=("$root/$fs")
done

# Inside: a clean environment with Heroku's PATH; the children become git repositories there.
timed "chroot: detect, cold and warm compile, release, report" chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin STACK=heroku-22 /bin/bash -euo pipefail -c '
  cd '"$work"'
  export GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=f GIT_AUTHOR_EMAIL=f@example.com GIT_COMMITTER_NAME=f GIT_COMMITTER_EMAIL=f@example.com
  for child in remotes/*; do
    (cd "$child" && git init -q --initial-branch=main && git add -A && git commit -qm fixture)
  done
  echo "=====> Inside the chroot: $(. /etc/os-release; echo "$PRETTY_NAME"), glibc $(ldd --version | head -1 | grep -o "[0-9.]*$")"
  echo "=====> ldd vendor/multipack-$(uname -m):"
  ldd buildpack/vendor/multipack-$(uname -m) | sed "s/^/       /"
  command -v swift && { echo " !     swift is in the root"; exit 1; } || true
  buildpack/vendor/multipack-$(uname -m) --version
  echo "=====> bin/detect";  buildpack/bin/detect app
  echo "=====> bin/compile"; buildpack/bin/compile app cache env
  echo "=====> bin/release"; buildpack/bin/release app
  echo "=====> bin/report";  buildpack/bin/report app cache env
  echo "=====> A second build (warm cache)"; buildpack/bin/compile app cache env | tail -4
'
echo "=====> verify-chroot: the packaged buildpack built the app inside the minimal root"

echo "=====> multipack build --stack-root $root, as the unprivileged user multipack-test"
command -v bwrap >/dev/null || { echo " !     --stack-root needs bubblewrap: apt-get install bubblewrap"; exit 1; }
id -u multipack-test >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin multipack-test
stack_work="$scratch/stack-root"
mkdir "$stack_work"
cp "$root$work/buildpack/vendor/multipack-$(uname -m)" "$stack_work/multipack"
cp -R fixtures/apps/python-node "$stack_work/app"
for child in node python probe; do cp -R "fixtures/buildpacks/$child" "$stack_work/$child"; done
printf '%s\n' "$stack_work/node" "$stack_work/python" "$stack_work/probe" > "$stack_work/app/.buildpacks"
chown -R multipack-test: "$stack_work"
timed "build --stack-root (unprivileged)" runuser -u multipack-test -- env -i HOME="$stack_work/home" XDG_CACHE_HOME="$stack_work/xdg" TMPDIR="$stack_work/tmp" \
  PATH=/usr/local/bin:/usr/bin:/bin "$stack_work/multipack" build --stack-root "$root" "$stack_work/app"
probe=$(echo "$stack_work"/xdg/multipack/apps/app-*/kept/build/probe.txt)
echo "=====> What the probe child saw:"
sed 's/^/       /' "$probe"
grep -q '^HOME=/app$' "$probe" && grep -q '^BUILD_DIR=/tmp/build_' "$probe" && ! grep -q '^UID=0$' "$probe"
echo "=====> verify-chroot: the app built on the stack root, without root, in Heroku's layout"
slug=$(echo "$stack_work"/xdg/multipack/apps/app-*/kept/slug.tgz)
figures+=("slug: $(stat -c %s "$slug") bytes ($(tar tzf "$slug" | wc -l) entries)")
echo "=====> Figures"
printf '       %s\n' "${figures[@]}"
