#!/usr/bin/env bash
# How long multipack takes to exit after SIGTERM (or SIGHUP) in each stage, and how many
# processes a build leaves behind (SPEC §11: every stage within 5 s, none left).
# Usage: benchmarks/signals.sh [multipack binary (default: the debug build)]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:-$root/.build/debug/multipack}
work=$(mktemp -d /tmp/multipack-signals-XXXXXX)
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR"

# A loopback server that sends the headers and 1000 bytes of a 100 kB body, then nothing.
python3 - "$work/port" <<'EOF' &
import socket, sys, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
def serve(c):
    c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"\x1f" * 1000)
    c.recv(1)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
server_pid=$!
while [ ! -s "$work/port" ]; do sleep 0.05; done
port=$(cat "$work/port")

# Alive and not a zombie (nobody may reap orphans in a container).
running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# child NAME DETECT COMPILE [RELEASE]: a buildpack whose scripts are the given bash bodies.
child() {
  mkdir -p "$work/$1/bin"
  printf '#!/usr/bin/env bash\n%s\n' "$2" > "$work/$1/bin/detect"
  printf '#!/usr/bin/env bash\n%s\n' "$3" > "$work/$1/bin/compile"
  [ -z "${4:-}" ] || printf '#!/usr/bin/env bash\n%s\n' "$4" > "$work/$1/bin/release"
  chmod +x "$work/$1/bin/"*
}

# stop LABEL SIGNAL ENTRY READY_FILE|-: starts compile, waits for READY_FILE (or 1 s), signals it,
# prints the seconds until it exited and how many of the processes it started are still alive.
stop() {
  local label=$1 signal=$2 entry=$3 ready=$4 app=$work/app-$RANDOM
  mkdir -p "$app/build" "$app/cache" "$app/env"
  echo "$entry" > "$app/build/.buildpacks"
  rm -f "$work/pids"
  "$binary" compile "$app/build" "$app/cache" "$app/env" > "$app/log" 2>&1 &
  local pid=$! start end alive=0
  if [ "$ready" = - ]; then sleep 1; else while [ ! -e "$ready" ]; do sleep 0.02; done; fi
  start=$(date +%s%N)
  kill "-$signal" "$pid"
  wait "$pid" || true
  end=$(date +%s%N)
  sleep 0.2
  if [ -f "$work/pids" ]; then
    while read -r p; do
      if running "$p"; then alive=$((alive + 1)); kill -KILL "$p"; fi
    done < "$work/pids"
  fi
  rm -f "$ready"
  printf '%-44s %8.2f %6d\n' "$label" "$(awk -v s="$start" -v e="$end" 'BEGIN {print (e - s) / 1e9}')" "$alive"
}

child trapper "trap '' TERM INT HUP; echo \$\$ >> $work/pids; (exec sleep 1000) & echo \$! >> $work/pids; touch $work/ready; sleep 1000" "true"
child exporter "echo Exporter" "cat > export <<'X'
export A=1
(trap '' TERM; exec sleep 1000) & echo \$! >> $work/pids
trap '' TERM; touch $work/ready; sleep 1000
X"
# The same busy inputs as SignalTests: 300,000 config vars, and 900 MB of zeros to extract.
child releaser "echo Releaser" "true" "python3 $root/fixtures/signal-inputs.py release; touch $work/ready"
python3 "$root/fixtures/signal-inputs.py" archive "$work/big.tgz"

printf '%-44s %8s %6s\n' "stage" "exit (s)" "alive"
stop "stalled download, SIGTERM" TERM "http://127.0.0.1:$port/bp.tgz" -
stop "detect that ignores TERM, SIGTERM" TERM "$work/trapper" "$work/ready"
stop "detect that ignores TERM, SIGHUP" HUP "$work/trapper" "$work/ready"
stop "export with a background job, SIGTERM" TERM "$work/exporter" "$work/ready"
stop "extracting 900 MB, SIGTERM" TERM "file://$work/big.tgz" -
stop "release of 300,000 config vars, SIGTERM" TERM "$work/releaser" "$work/ready"

# A compile that leaves two daemons behind, on a successful build.
child leaver "echo Leaver" "setsid sleep 1000 > /dev/null 2>&1 & echo \$! >> $work/pids
nohup sleep 1000 > /dev/null 2>&1 & echo \$! >> $work/pids"
rm -f "$work/pids"
mkdir -p "$work/leave/build" "$work/leave/cache" "$work/leave/env"
echo "$work/leaver" > "$work/leave/build/.buildpacks"
"$binary" compile "$work/leave/build" "$work/leave/cache" "$work/leave/env" > "$work/leave/log" 2>&1
alive=0
while read -r p; do
  if running "$p"; then alive=$((alive + 1)); kill -KILL "$p"; fi
done < "$work/pids"
printf '%-44s %8s %6d\n' "compile leaving setsid + nohup sleep (success)" "-" "$alive"
