#!/usr/bin/env bash
# A buildpack author's vendored binary, without Docker (SPEC §19, issue #24), offline end to end:
# a stack-like build image made from this machine's own Debian packages (gcc, make, libc6-dev,
# curl, bash, coreutils … and what they depend on) as one OCI layer (umoci), pushed to Debian's
# docker-registry on loopback (skopeo); a small C program's source served by a loopback HTTP
# server as hello-1.0.tar.gz (./configure --prefix, make, make install);
#   multipack run --stack-image IMAGE --mount cache:/var/cache --mount out:/out -- sh -c '…'
# downloads the source into the cache once, builds it with --prefix=/app/vendor/hello and carries
# hello.tgz out; a second run downloads nothing. Then a fixture buildpack vendors hello.tgz into
# an app (from the loopback server, as buildpacks fetch from S3), `multipack build` makes its
# slug, and `multipack run SLUG -- hello` runs the binary from /app/vendor/hello.
# Needs docker-registry, umoci, skopeo, python3 and the packages above installed. About a minute.
# Nothing is left behind: everything lives under /var/tmp and goes at exit.
#   scripts/try-vendored-binary.sh
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
source scripts/lib/registry.sh
for tool in docker-registry umoci skopeo python3; do
  command -v "$tool" >/dev/null || { echo " !     needs $tool: apt-get install docker-registry umoci skopeo python3" >&2; exit 1; }
done
binary="${MULTIPACK:-$checkout/.build/debug/multipack}"
[ -x "$binary" ] || (cd "$checkout" && swift build --product multipack >&2)
scratch=$(mktemp -d /var/tmp/multipack-try-vendored-XXXXXX)
chmod 755 "$scratch"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf --one-file-system "$scratch"
}
trap cleanup EXIT
figures=()
timed() {
  local name="$1" start
  start=$(date +%s.%N)
  shift
  "$@"
  figures+=("$name: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$start" "$(date +%s.%N)")")
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cd "$scratch"

# The build image: the installed packages a C build needs, with their dependencies, copied from
# this machine (the same Debian the image then is), documentation left out.
wanted="bash dash coreutils sed grep mawk tar gzip findutils diffutils make gcc libc6-dev curl ca-certificates base-files"
packages=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
  --no-enhances $wanted 2>/dev/null | grep -v '^[ <]' | sort -u || true)
installed=$( (dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $packages 2>/dev/null || true) | awk '$1 == "ii" {print $2}')
mkdir -p rootfs/usr/{bin,sbin,lib,lib64} rootfs/{etc,tmp,var/tmp,var/cache,home,app,opt}
for link in bin sbin lib lib64; do ln -s "usr/$link" "rootfs/$link"; done
dpkg -L $installed | sort -u | grep -v -E '^/usr/share/(doc|man|info|locale)/' | grep -v '^/\.$' >files.txt
# dpkg lists files its path-exclude rules kept out (documentation): tar skips what is not there.
(tar -cf - --no-recursion -T files.txt 2>/dev/null || true) | tar -xf - --keep-directory-symlink -C rootfs
ln -sf gcc-12 rootfs/usr/bin/cc 2>/dev/null || true
printf 'root:x:0:0::/root:/bin/sh\nheroku:x:1000:1000::/app:/bin/bash\n' >rootfs/etc/passwd
printf 'root:x:0:\nheroku:x:1000:\n' >rootfs/etc/group
figures+=("build image root: $(echo "$installed" | wc -l) packages, $(du -sh rootfs | cut -f1)")

umoci init --layout layout >/dev/null
umoci new --image layout:1
umoci unpack --rootless --image layout:1 bundle >/dev/null
timed "umoci repack (the root as one layer)" bash -c 'cp -a rootfs/. bundle/rootfs/ && umoci repack --image layout:1 bundle'
rm -rf bundle rootfs
umoci config --image layout:1 --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
start_registry "$scratch/storage"
pids+=("$registry_pid")
image="127.0.0.1:$registry_port/try/builder:1"
timed "skopeo copy to the loopback registry" skopeo copy --quiet --dest-tls-verify=false oci:layout:1 "docker://$image"
figures+=("image layer: $(du -h "$(ls -S layout/blobs/sha256/* | head -1)" | cut -f1) compressed")
rm -rf layout

# The source, as a project's release tarball: ./configure --prefix, make, make install.
mkdir -p src/hello-1.0 srv
cat >src/hello-1.0/hello.c <<'EOF'
#include <stdio.h>
#ifndef PREFIX
#define PREFIX "?"
#endif
int main(void) { printf("Hello from %s, built for it.\n", PREFIX); return 0; }
EOF
cat >src/hello-1.0/configure <<'EOF'
#!/bin/sh
prefix=/usr/local
for arg in "$@"; do case "$arg" in --prefix=*) prefix="${arg#--prefix=}" ;; esac; done
echo "PREFIX = $prefix" >config.mk
echo "configured for $prefix"
EOF
chmod +x src/hello-1.0/configure
printf 'include config.mk\nhello: hello.c\n\tcc -O2 -DPREFIX=\\"$(PREFIX)\\" -o $@ hello.c\ninstall: hello\n\tmkdir -p $(PREFIX)/bin\n\tcp hello $(PREFIX)/bin/hello\n' \
  >src/hello-1.0/Makefile
tar -czf srv/hello-1.0.tar.gz -C src hello-1.0
http_port=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory srv "$http_port" >http.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$http_port/" && break; sleep 0.05; done
downloads() { grep -c 'GET /hello-1.0.tar.gz' http.log || true; }

# The build of the binary, as `docker run -v $PWD/cache:/var/cache -v $PWD/out:/out builder` would.
mkdir -p cache out xdg tmp
export XDG_CACHE_HOME="$scratch/xdg" TMPDIR="$scratch/tmp"
script="set -e
cd /var/cache
[ -f hello-1.0.tar.gz ] || curl -fsSO http://127.0.0.1:$http_port/hello-1.0.tar.gz
mkdir -p /tmp/src && cd /tmp/src && tar -xzf /var/cache/hello-1.0.tar.gz && cd hello-1.0
./configure --prefix=/app/vendor/hello
make install
tar -czf /out/hello.tgz -C /app/vendor hello"
echo "=====> multipack run --stack-image $image --mount cache:/var/cache --mount out:/out -- sh -c '…' (cold: pull, download)"
timed "first run (pull, unpack, download, build)" "$binary" run --stack-image "$image" \
  --mount "$PWD/cache:/var/cache" --mount "$PWD/out:/out" -- sh -c "$script"
first=$(downloads)
rm out/hello.tgz
timed "second run (cached source)" "$binary" run --stack-image "$image" \
  --mount "$PWD/cache:/var/cache" --mount "$PWD/out:/out" -- sh -c "$script"
second=$(($(downloads) - first))
echo "=====> Source downloads: first run $first, second run $second"
[ "$first" -eq 1 ] && [ "$second" -eq 0 ]
tar -tzf out/hello.tgz | sed 's/^/       /'
figures+=("hello.tgz: $(stat -c %s out/hello.tgz) bytes")
[ "$(stat -c %u out/hello.tgz)" = "$(id -u)" ] || { echo " !     out/hello.tgz is not the caller's" >&2; exit 1; }
[ -z "$(ls -A out | grep -v '^hello.tgz$')" ] && [ ! -e app ] && [ ! -e vendor ]

# The buildpack that vendors it, as buildpacks fetch binaries from S3, and an app that uses it.
cp out/hello.tgz srv/hello.tgz
mkdir -p buildpack/bin app
printf '#!/usr/bin/env bash\necho Hello\n' >buildpack/bin/detect
cat >buildpack/bin/compile <<EOF
#!/usr/bin/env bash
set -euo pipefail
echo "-----> Vendoring hello into /app/vendor/hello"
mkdir -p "\$1/vendor" "\$1/.profile.d"
curl -fsS http://127.0.0.1:$http_port/hello.tgz | tar -xz -C "\$1/vendor"
echo 'export PATH="\$HOME/vendor/hello/bin:\$PATH"' >"\$1/.profile.d/hello.sh"
EOF
chmod +x buildpack/bin/detect buildpack/bin/compile
echo "web: hello" >app/Procfile
echo "=====> multipack build app --buildpack ./buildpack --stack-image $image --slug hello-app.tar.gz"
timed "build of the app" "$binary" build app --buildpack "$PWD/buildpack" --stack-image "$image" --slug "$PWD/hello-app.tar.gz"
echo "=====> multipack run hello-app.tar.gz --stack-image $image -- hello"
timed "run of the slug" "$binary" run hello-app.tar.gz --stack-image "$image" -- hello | tee said.txt
grep -qx 'Hello from /app/vendor/hello, built for it.' said.txt
figures+=("slug: $(stat -c %s hello-app.tar.gz) bytes")
echo "=====> try-vendored-binary: built for /app on the image, carried out, vendored, run from the slug"
echo "=====> Figures"
printf '       %s\n' "${figures[@]}"
