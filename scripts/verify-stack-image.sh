#!/usr/bin/env bash
# A stack image made from a real root, end to end (SPEC §15, issue #20): the debootstrap'd Debian
# root of verify-chroot.sh (minbase plus bash, curl, git and the libraries Heroku's stacks ship; or,
# where Debian's mirror cannot be reached, a copy of this machine's /usr and /etc) becomes a
# one-layer OCI image (umoci), is pushed to Debian's docker-registry on loopback (skopeo),
# and fixtures/apps/python-node (its two children and the probe, both app hooks) is built on it
# with `multipack build --stack-image 127.0.0.1:PORT/verify/stack:bookworm`, as the unprivileged
# user multipack-test: multipack pulls and unpacks the image itself, and runs its own binary there
# through this machine's loader (the debug build, with its Swift runtime, unless MULTIPACK names
# another binary). Then a warm build (one manifest request, no blob), a build pinned by digest
# (no request) and a one-off `run` on the image.
# Needs root (debootstrap, the user switch), docker-registry, umoci, skopeo and debootstrap. Slow
# the first time (the root is kept in $MULTIPACK_CHROOT, shared with verify-chroot.sh). Not part of
# CI. Nothing is left behind but that root: the rest lives under /var/tmp and goes at exit.
#   scripts/verify-stack-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
source scripts/lib/registry.sh
root="${MULTIPACK_CHROOT:-/var/tmp/multipack-chroot}"
for tool in docker-registry umoci skopeo; do
  command -v "$tool" >/dev/null || { echo " !     needs $tool: apt-get install docker-registry umoci skopeo" >&2; exit 1; }
done
scratch=$(mktemp -d /var/tmp/multipack-verify-image-XXXXXX)
chmod 755 "$scratch"
cleanup() {
  stop_registry
  rm -rf "$scratch"
}
trap cleanup EXIT
figures=()
timed() {
  local name="$1" start=$SECONDS
  shift
  "$@"
  figures+=("$name: $((SECONDS - start)) s")
}

# The root: verify-chroot.sh's, made here the same way when it is not there yet.
for m in $(awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m" || true; done
made_from=debootstrap
if [ ! -x "$root/usr/bin/git" ]; then
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  libraries=libcurl4,liblzma5,zlib1g,libyaml-0-2,libstdc++6,libgcc-s1,libssl3,ca-certificates
  proxy="$(apt-config shell proxy Acquire::http::Proxy 2>/dev/null | sed -n "s/^proxy='\(.*\)'$/\1/p")"
  echo "=====> debootstrap --variant=minbase bookworm $root $mirror (+ curl git $libraries)"
  rm -rf --one-file-system "$root"
  if ! command -v debootstrap >/dev/null ||
    ! timed debootstrap env ${proxy:+http_proxy="$proxy"} debootstrap --variant=minbase \
      --include="curl,git,$libraries" bookworm "$root" "$mirror" >"$scratch/debootstrap.log" 2>&1; then
    tail -5 "$scratch/debootstrap.log" 2>/dev/null || true
    echo "=====> debootstrap could not make the root: a copy of this machine's /usr and /etc instead"
    made_from="a copy of this machine"
    rm -rf --one-file-system "$root"
    mkdir -p "$root"/{usr,var/tmp,tmp,home,root,opt,srv}
    timed "copy" cp -a /etc "$root/etc"
    for part in bin sbin lib lib64 libexec share/ca-certificates share/git-core share/perl5 share/perl; do
      [ -e "/usr/$part" ] && mkdir -p "$(dirname "$root/usr/$part")" && cp -a "/usr/$part" "$root/usr/$part"
    done
    for link in bin sbin lib lib64; do ln -sfn "usr/$link" "$root/$link"; done
    rm -rf "$root/usr/lib/debug" "$root/etc/ssh"
  fi
fi
echo "=====> The root ($made_from): $(du -sh "$root" | cut -f1), $(. "$root/etc/os-release"; echo "$PRETTY_NAME"), without Swift: $(ls -d "$root"/opt/swift "$root"/usr/lib/swift 2>/dev/null || echo nothing found)"

# The image: the root as one layer.
cd "$scratch"
umoci init --layout layout >/dev/null
umoci new --image layout:bookworm
# Not `umoci insert`: umoci 0.4.7's leaves the layer's tar without its last padding and end
# blocks, which GNU tar and multipack both refuse as truncated.
umoci unpack --rootless --image layout:bookworm bundle >/dev/null
timed "umoci repack (the root as a layer)" bash -c 'cp -a "$0/." bundle/rootfs/ && umoci repack --image layout:bookworm bundle' "$root"
rm -rf bundle
umoci config --image layout:bookworm --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
start_registry "$scratch/storage"
port=$registry_port
image="127.0.0.1:$port/verify/stack:bookworm"
timed "skopeo copy to the loopback registry" skopeo copy --quiet --dest-tls-verify=false oci:layout:bookworm "docker://$image"
figures+=("image layer: $(du -h "$(ls -S layout/blobs/sha256/* | head -1)" | cut -f1) compressed")
rm -rf layout

# The app and its children, and multipack, where the unprivileged user can read them.
binary="${MULTIPACK:-$checkout/.build/debug/multipack}"
[ -x "$binary" ] || (cd "$checkout" && swift build --product multipack >&2)
id -u multipack-test >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin multipack-test
work="$scratch/work"
mkdir -p "$work/tmp" "$work/home"
cp "$binary" "$work/multipack"
cp -R "$checkout/fixtures/apps/python-node" "$work/app"
for child in node python probe; do cp -R "$checkout/fixtures/buildpacks/$child" "$work/$child"; done
printf '%s\n' "$work/node" "$work/python" "$work/probe" >"$work/app/.buildpacks"
chown -R multipack-test: "$work"
as_user() {
  runuser -u multipack-test -- env -i HOME="$work/home" XDG_CACHE_HOME="$work/xdg" TMPDIR="$work/tmp" \
    PATH=/usr/local/bin:/usr/bin:/bin "$work/multipack" "$@"
}
requests() { grep -c '"\(GET\|HEAD\) /v2/' registry.log || true; }

echo "=====> multipack build --stack-image $image, as multipack-test (cold: the pull and unpack)"
timed "cold build (pull, unpack, build)" as_user build --stack-image "$image" "$work/app" --json >"$scratch/cold.json"
probe=$(echo "$work"/xdg/multipack/apps/app-*/kept/build/probe.txt)
echo "=====> What the probe child saw:"
sed 's/^/       /' "$probe"
grep -q '^OS=Debian GNU/Linux 12 (bookworm)$' "$probe" || [ "$made_from" != debootstrap ]
grep -q '^HOME=/app$' "$probe" && grep -q '^BUILD_DIR=/tmp/build_' "$probe" && ! grep -q '^UID=0$' "$probe"
python3 -c 'import json, sys; root = json.load(open(sys.argv[1]))["root"]; print("=====> --json root:", root); assert root["kind"] == "image"' "$scratch/cold.json"

before=$(requests)
timed "warm build (tag)" as_user build --stack-image "$image" "$work/app" >/dev/null
sleep 0.3
warm=$(($(requests) - before))
digest=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["root"]["digest"])' "$scratch/cold.json")
before=$(requests)
timed "warm build (pinned)" as_user build --stack-image "127.0.0.1:$port/verify/stack@$digest" "$work/app" >/dev/null
sleep 0.3
pinned=$(($(requests) - before))
echo "=====> Registry requests: warm build by tag $warm (a HEAD of the manifest), pinned by digest $pinned"
[ "$warm" -eq 1 ] && [ "$pinned" -eq 0 ]
echo "=====> multipack report app (the root lines):"
as_user report "$work/app" | grep '^stack' | sed 's/^/       /'
echo "=====> multipack run app --stack-image … -- a one-off command"
as_user run "$work/app" --stack-image "$image" -- bash -c '. /etc/os-release; echo "on $PRETTY_NAME as uid $(id -u), python3 here: $(command -v python3 || echo none)"'
figures+=("unpacked root: $(du -sh "$work"/xdg/multipack/stacks/roots | cut -f1)")
echo "=====> verify-stack-image: the app built and ran on the image, pulled without Docker, without root"
echo "=====> Figures"
printf '       %s\n' "${figures[@]}"
