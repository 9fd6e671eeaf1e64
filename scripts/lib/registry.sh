# Sourced (bash) by the scripts and benchmarks that push an image to Debian's docker-registry on
# loopback. `start_registry STORAGE [quiet]` starts one on a free port of 127.0.0.1 that stores
# its blobs in STORAGE, with registry.yml and registry.log in the current directory (the log's
# access lines are what the scripts count requests with; `quiet` leaves them out), waits until it
# answers, and sets registry_port and registry_pid. `stop_registry` ends it: call it at exit.
registry_pid=
start_registry() {
  local storage=$1 quiet=${2:-}
  registry_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  {
    printf 'version: 0.1\nlog:\n  level: error\n'
    if [ "$quiet" = quiet ]; then printf '  accesslog:\n    disabled: true\n'; fi
    printf 'storage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$storage" "$registry_port"
  } >registry.yml
  docker-registry serve registry.yml >registry.log 2>&1 &
  registry_pid=$!
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$registry_port/v2/" && break; sleep 0.05; done
}
stop_registry() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
}
