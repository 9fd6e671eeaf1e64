#!/usr/bin/env bash
# Runs or checks every command the README shows (its 4-space indented blocks), so none can rot:
# each is run here, or checked as far as this machine allows (options against --help, scripts for
# syntax), or named as needing Heroku. A command no rule knows fails the check: a new README command
# needs a rule here. Prints one line per command and what came of it.
#   scripts/check-readme.sh          (MULTIPACK=binary to use instead of `swift run multipack`;
#                                      MULTIPACK_README_ARCHIVE=packaged .tgz for check-budgets.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
multipack="${MULTIPACK:-}"
if [ -z "$multipack" ]; then
  swift build --product multipack >&2
  multipack="$(swift build --show-bin-path)/multipack"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/multipack-readme-XXXXXX")"
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" XDG_CACHE_HOME="$work/xdg" TMPDIR="$work/tmp"
mkdir -p "$HOME" "$XDG_CACHE_HOME" "$TMPDIR"
failed=0
say() { printf '%-8s %s\n' "$1" "$2"; [ "$1" != FAILED ] || failed=1; }

# run LABEL COMMAND...: runs it, shows its last line; a failure fails the check.
run() {
  local label="$1" output status=0
  shift
  output="$("$@" 2>&1)" || status=$?
  if [ "$status" -eq 0 ]; then
    say ran "$label  → $(printf '%s\n' "$output" | grep -v '^[[:space:]]*$' | tail -n 1)"
  else
    say FAILED "$label  → exit $status: $(printf '%s\n' "$output" | tail -n 5 | tr '\n' ' ')"
  fi
}

# The packages .ci/run installs: the README's install line must name every one.
ci_packages="$(sed -n 's/^packages="\(.*\)"$/\1/p' .ci/run | head -n 1)"
[ -n "$ci_packages" ] || { echo " !     .ci/run has no packages=\"…\" line to compare the README's install line with" >&2; exit 1; }

check_options() {  # VERB LINE: every option the synopsis names exists in `multipack VERB --help`.
  local help option missing=""
  help="$("$multipack" $1 --help 2>&1)"
  # What follows a lone `--` is the one-off command's own arguments, not multipack's options.
  for option in $(sed 's/ -- .*//' <<<"$2" | grep -oE '(^|[[ |])--?[a-z][a-z-]*' | sed 's/^[[ |]//'); do
    grep -qE -- "(^|[ ,])$option([ ,=]|$)" <<<"$help" || missing+=" $option"
  done
  if [ -z "$missing" ]; then say checked "$2  (options exist in multipack $1 --help)"; else say FAILED "$2  (unknown:$missing)"; fi
}

lock_app() {  # an app whose .buildpacks names the fixture children by absolute path, in git
  local app="$work/lockapp"
  if [ ! -d "$app" ]; then
    cp -R fixtures/apps/python-node "$app"
    printf '%s\n%s\n' "$root/fixtures/buildpacks/node" "$root/fixtures/buildpacks/python" > "$app/.buildpacks"
    git -C "$app" init -q && git -C "$app" add -A && git -C "$app" -c user.name=readme -c user.email=readme@example.com commit -qm app
  fi
  printf '%s' "$app"
}

while IFS= read -r line; do
  command="${line#    }"
  command="${command%%   #*}"
  command="${command%"${command##*[![:space:]]}"}"
  case "$command" in
    "apt-get update"*"apt-get install"*"&& swift run multipack build "*)
      packages="$(sed -n 's/.*apt-get install -y -qq \([a-z0-9 .+-]*\) &&.*/\1/p' <<<"$command")"
      missing=""
      for package in $packages; do dpkg -s "$package" >/dev/null 2>&1 || missing+=" $package"; done
      for package in $ci_packages; do [[ " $packages " == *" $package "* ]] || missing+=" $package(.ci/run)"; done
      if [ -n "$missing" ]; then say FAILED "install line: not installed or not listed:$missing"; continue; fi
      say checked "apt-get install $packages  (all installed; the same list as .ci/run)"
      app="${command##*swift run multipack build }"
      if "$multipack" build "$app" >"$work/build.log" 2>&1; then
        say ran "swift run multipack build $app  → $(grep -c '' "$work/build.log") lines of log, $(grep -o 'Slug: [^ ]*' "$work/build.log" | tail -n 1)"
      else
        say FAILED "swift run multipack build $app  → $(tail -n 5 "$work/build.log" | tr '\n' ' ')"
      fi
      # The log's own "Try it" line starts the web process: it must answer on its port.
      try="$(sed -n 's/.*Try it: multipack //p' "$work/build.log" | tail -n 1)"
      port=$((20000 + RANDOM % 20000))
      # shellcheck disable=SC2086 # the line's words, as a user would paste them
      "$multipack" $try --port "$port" >"$work/web.log" 2>&1 &
      web=$!
      answered=""
      for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then answered=yes; break; fi
        sleep 0.1
      done
      kill "$web" 2>/dev/null || true
      wait "$web" 2>/dev/null || true
      if [ -n "$answered" ]; then say ran "Try it: multipack $try  → answered on 127.0.0.1:$port"
      else say FAILED "Try it: multipack ${try:-(no Try it line)}  → no answer: $(tail -n 3 "$work/web.log" | tr '\n' ' ')"; fi
      ;;
    "swift test")
      say covered "swift test  (the test suite that runs this script; .ci/run runs it)" ;;
    "heroku buildpacks:set "*)
      say "not run" "$command  (needs Heroku; ReleaseScriptTests plays the tag and download path)" ;;
    "scripts/release.sh "*)
      say covered "$command  (ReleaseScriptTests runs it in a copy of the checkout: it commits and tags)" ;;
    "scripts/check-budgets.sh"*)
      if [ -n "${MULTIPACK_README_ARCHIVE:-}" ]; then
        # Timings belong to benchmarks on an idle machine: only the size, ldd and glibc lines count here.
        budgets="$(scripts/check-budgets.sh "$MULTIPACK_README_ARCHIVE" 2>&1 || true)"
        broken="$(grep -v 'bin/detect median' <<<"$budgets" | grep -E '(OVER|[^k])$' | grep -vE ' ok$' || true)"
        summary="$(grep -E 'archive size|bin/detect' <<<"$budgets" | tr -s ' ' | tr '\n' ';')"
        if [ -z "$broken" ] && grep -q 'archive size' <<<"$budgets"; then say ran "scripts/check-budgets.sh ARCHIVE  → $summary"
        else say FAILED "scripts/check-budgets.sh ARCHIVE  → $broken"; fi
      else
        bash -n scripts/check-budgets.sh && say checked "$command  (syntax; no packaged archive given)"
      fi ;;
    "scripts/verify-chroot.sh"*)
      bash -n scripts/verify-chroot.sh && grep -q debootstrap scripts/verify-chroot.sh &&
        say checked "$command  (syntax; needs root, debootstrap and Debian's mirror, so not run here)" ;;
    benchmarks/*.sh* | scripts/fuzz/*.sh*)
      script="${command%% *}"
      if [ -x "$script" ] && bash -n "$script"; then say checked "$command  (exists, syntax; runs for minutes)"
      else say FAILED "$command  ($script missing or not executable)"; fi ;;
    "multipack build "* | "multipack run "* | "multipack ci "* | "multipack cache purge"*)
      verb="${command#multipack }"; verb="${verb%% *}"
      [ "$verb" = cache ] && verb="cache purge"
      check_options "$verb" "$command" ;;
    "["*)  # the continuation of the build synopsis
      check_options build "$command" ;;
    "multipack lock --update "*)
      check_options lock "$command" ;;
    "multipack lock")
      (cd "$(lock_app)" && run "multipack lock" "$multipack" lock) ;;
    "multipack lock path/to/app")
      run "multipack lock path/to/app" "$multipack" lock "$(lock_app)" ;;
    "git add .buildpacks.lock && git commit"*)
      (cd "$(lock_app)" && run "$command" bash -c "git add .buildpacks.lock && git -c user.name=readme -c user.email=readme@example.com commit -q -m 'Lock the buildpacks' && git log --oneline -1") ;;
    *)
      say FAILED "$command  (no rule in scripts/check-readme.sh: run it here, or say why it cannot run)" ;;
  esac
done < <(awk '
  prev_blank && /^    [^ ]/ { block = 1 }
  block && /^    / {
    text = substr($0, 5)
    if (text ~ /^(apt-get |swift |heroku |multipack|scripts\/|benchmarks\/|git |\[-)/ || text ~ /^ +\[-/) print
    next
  }
  { block = 0; prev_blank = ($0 ~ /^$/) }
' README.md | sed 's/^    *\[/    [/')

exit "$failed"
