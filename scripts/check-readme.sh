#!/usr/bin/env bash
# Runs or checks every command the README and docs/ show (their 4-space indented blocks), so none
# can rot: each is run here, or checked as far as this machine allows (options against --help,
# scripts for syntax, deploy lines against buildpack.toml), or named as needing Heroku. A command
# no rule knows fails the check: a new command needs a rule here. Prints one line per command.
#   scripts/check-readme.sh   (MULTIPACK=binary to use instead of building one;
#                              MULTIPACK_README_DIST=a release's dist/ (multipack.tgz,
#                              multipack-<arch>, SHA256SUMS): installed and checked as a user would)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
multipack="${MULTIPACK:-}"
if [ -z "$multipack" ]; then
  swift build --product multipack >&2
  multipack="$(swift build --show-bin-path)/multipack"
fi
dist="${MULTIPACK_README_DIST:-}"
arch="$(uname -m)"
work="$(mktemp -d "${TMPDIR:-/tmp}/multipack-readme-XXXXXX")"
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" XDG_CACHE_HOME="$work/xdg" TMPDIR="$work/tmp"
mkdir -p "$HOME" "$XDG_CACHE_HOME" "$TMPDIR" "$work/bin"
failed=0
say() { printf '%-8s %s\n' "$1" "$2"; [ "$1" != FAILED ] || failed=1; }

# run LABEL COMMAND...: runs it, shows its last line; a failure fails the check.
run() {
  local label="$1" output status=0
  shift
  # stdin is not the README being read: `multipack run … -- bash` passes its input on.
  output="$("$@" 2>&1 < /dev/null)" || status=$?
  if [ "$status" -eq 0 ]; then
    say ran "$label  → $(printf '%s\n' "$output" | grep -v '^[[:space:]]*$' | tail -n 1)"
  else
    say FAILED "$label  → exit $status: $(printf '%s\n' "$output" | tail -n 5 | tr '\n' ' ')"
  fi
}

# fresh COMMAND: runs it as a user would in a new shell after installing: only HOME, TMPDIR and a
# PATH that has the installed command, in the checkout. This machine is offline, and the check
# makes sure of it: Docker Hub's names go to a closed port on loopback (nothing listens on 9), so
# builds take the offline way, on this machine's own system with a warning, as they would here.
offline="MULTIPACK_STACK_REGISTRY=http://127.0.0.1:9"
fresh() (
  exec env -i HOME="$HOME" TMPDIR="$TMPDIR" LANG=C.UTF-8 PATH="$work/bin:/usr/local/bin:/usr/bin:/bin" "$offline" \
    bash -c "cd '$root' && $1"
)

version="$(sed -n '/^\[buildpack\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' buildpack.toml | head -n 1)"
homepage="$(sed -n 's/^homepage *= *"\([^"]*\)".*/\1/p' buildpack.toml | head -n 1)"
[ "$homepage" = https://github.com/multipack/multipack ] || say FAILED "buildpack.toml's homepage is $homepage"
placeholders="$(grep -rnE '<org>|github\.com/[<{]' README.md docs bin lib scripts Sources buildpack.toml .github 2>/dev/null | grep -v 'scripts/check-readme.sh' || true)"
[ -z "$placeholders" ] || say FAILED "a placeholder instead of $homepage: $placeholders"

check_options() {  # VERB LINE: every option the synopsis names exists in `multipack VERB --help`.
  local help option missing=""
  help="$("$multipack" $1 --help 2>&1)"
  # What follows a lone `--` is the one-off command's own arguments, not multipack's options.
  for option in $(sed 's/ -- .*//' <<<"$2" | grep -oE '(^|[[ |])--?[a-z][a-z-]*' | sed 's/^[[ |]//'); do
    grep -qE -- "(^|[ ,])$option([ ,=]|$)" <<<"$help" || missing+=" $option"
  done
  if [ -z "$missing" ]; then say checked "$2  (options exist in multipack $1 --help)"; else say FAILED "$2  (unknown:$missing)"; fi
}

# deploy_line LINE: the canonical URL, and the release buildpack.toml names (the default branch's).
deploy_line() {
  local line="$1" rest
  rest="${line#heroku buildpacks:set }"
  case "$rest" in
    "$homepage" | "$homepage#v$version" | "$homepage/releases/download/v$version/multipack.tgz")
      say "not run" "$line  (needs Heroku; HerokuDeployTests deploys the default branch and a tag offline)" ;;
    "$homepage#vX.Y.Z" | "$homepage/releases/download/vX.Y.Z/multipack.tgz")
      say checked "$line  (the form of the deploy lines, in docs/)" ;;
    *) say FAILED "$line  (not $homepage, its #v$version tag or its v$version archive)" ;;
  esac
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

# The first screen: the packages, the install, the build, and its Try it line from a fresh shell.
first_command() {
  local command="$1" package missing="" installed try port web answered
  case "$command" in
    "apt-get update -qq && apt-get install -y -qq \$(cat .ci/debian-packages) && scripts/install.sh && multipack build "*) ;;
    *) say FAILED "$command  (the first command installs .ci/debian-packages, then scripts/install.sh, then builds)"; return ;;
  esac
  for package in $(cat .ci/debian-packages); do dpkg -s "$package" >/dev/null 2>&1 || missing+=" $package"; done
  if [ -n "$missing" ]; then say FAILED "apt-get install \$(cat .ci/debian-packages): not installed:$missing"; return; fi
  say checked "apt-get install \$(cat .ci/debian-packages)  ($(wc -l < .ci/debian-packages) packages, all installed)"
  # scripts/install.sh builds a release binary (minutes); here it installs the one under test,
  # into a directory of this check's own, which the fresh shells have on PATH.
  installed="$multipack"
  [ -n "$dist" ] && installed="$dist/multipack-$arch"
  if ! PATH="$work/bin:$PATH" MULTIPACK_INSTALL_FROM="$installed" scripts/install.sh "$work/bin" > "$work/install.log" 2>&1; then
    say FAILED "scripts/install.sh  → $(tail -n 3 "$work/install.log" | tr '\n' ' ')"; return
  fi
  say ran "scripts/install.sh  → $(tail -n 1 "$work/install.log")"
  run "multipack --version (a fresh shell)" fresh "multipack --version"
  if [ -n "$dist" ] && fresh "multipack --version" | grep -q unknown; then
    say FAILED "multipack --version names no version or commit: $(fresh "multipack --version")"
  fi
  local app="${command##*&& multipack build }"
  if fresh "multipack build $app" > "$work/build.log" 2>&1; then
    say ran "multipack build $app  → $(grep -c '' "$work/build.log") lines of log, $(grep -o 'Slug: [^ ]*' "$work/build.log" | tail -n 1)"
  else
    say FAILED "multipack build $app  → $(tail -n 5 "$work/build.log" | tr '\n' ' ')"; return
  fi
  # The log's own "Try it" line, as printed, in a fresh shell: the web process answers.
  try="$(sed -n 's/.*Try it: //p' "$work/build.log" | tail -n 1)"
  [[ "$try" == "multipack run "* ]] || { say FAILED "Try it: ${try:-(none)}  (does not start with multipack run)"; return; }
  port=$((20000 + RANDOM % 20000))
  # Started by exec all the way down, so that $! is multipack's own pid when it is killed (this
  # script may run with SIGTERM blocked, which multipack unblocks and bash does not).
  env -i HOME="$HOME" TMPDIR="$TMPDIR" LANG=C.UTF-8 PATH="$work/bin:/usr/local/bin:/usr/bin:/bin" "$offline" \
    bash -c "cd '$root' && exec $try --port $port" > "$work/web.log" 2>&1 &
  web=$!
  answered=""
  for _ in $(seq 1 100); do
    if curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then answered=yes; break; fi
    sleep 0.1
  done
  kill "$web" 2>/dev/null || true
  wait "$web" 2>/dev/null || true
  if [ -n "$answered" ]; then say ran "Try it: $try  → answered on 127.0.0.1:$port (--port $port added)"
  else say FAILED "Try it: $try  → no answer: $(tail -n 3 "$work/web.log" | tr '\n' ' ')"; fi
}

# The release binary from its assets, as the README says, with the assets of MULTIPACK_README_DIST
# for GitHub's and a directory of this check's for /usr/local/bin.
release_install() {
  local command="$1" local_command
  if [ -z "$dist" ]; then
    bash -n -c "$command" && say checked "$command  (syntax; no release assets given)"
    return
  fi
  local_command="${command//$homepage\/releases\/download\/v$version\//file://$dist/}"
  local_command="${local_command//\/usr\/local\/bin\//$work/release-bin/}"
  if [ "$local_command" = "$command" ] || [[ "$command" != *"/v$version/"* ]]; then
    say FAILED "$command  (not the v$version release's assets from $homepage)"; return
  fi
  mkdir -p "$work/release-bin" "$work/download"
  run "$command  (assets from a local dist/)" bash -c "cd '$work/download' && $local_command && '$work/release-bin/multipack' --version"
}

while IFS= read -r line; do
  command="${line#    }"
  command="${command%%   #*}"
  command="${command%"${command##*[![:space:]]}"}"
  case "$command" in
    "apt-get update"*)
      first_command "$command" ;;
    "swift test")
      say covered "swift test  (the test suite that runs this script; .ci/run runs it)" ;;
    "heroku buildpacks:set "*)
      deploy_line "$command" ;;
    "heroku config:set MULTIPACK_BINARY_URL="*" MULTIPACK_BINARY_SHA256="*)
      if grep -q 'multipack_setting MULTIPACK_BINARY_URL' lib/bootstrap-multipack.sh &&
        grep -q 'multipack_setting MULTIPACK_BINARY_SHA256' lib/bootstrap-multipack.sh; then
        say "not run" "$command  (needs Heroku; ShimTests gives both as config vars)"
      else
        say FAILED "$command  (lib/bootstrap-multipack.sh reads no such config vars)"
      fi ;;
    "scripts/install.sh"*)
      say covered "$command  (the first command runs it)" ;;
    "curl -fsSLO "*)
      release_install "$command" ;;
    "scripts/release.sh "*)
      say covered "$command  (ReleaseScriptTests runs it in a clone: it commits and tags)" ;;
    "scripts/check-budgets.sh"*)
      bash -n scripts/check-budgets.sh && say checked "$command  (syntax; it packages the checkout, minutes)" ;;
    "scripts/verify-chroot.sh"*)
      bash -n scripts/verify-chroot.sh && grep -q debootstrap scripts/verify-chroot.sh &&
        say checked "$command  (syntax; needs root, debootstrap and Debian's mirror, so not run here)" ;;
    benchmarks/*.sh* | scripts/fuzz/*.sh*)
      script="${command%% *}"
      if [ -x "$script" ] && bash -n "$script"; then say checked "$command  (exists, syntax; runs for minutes)"
      else say FAILED "$command  ($script missing or not executable)"; fi ;;
    "multipack run fixtures/apps/python-node -- "*)
      # After the first command's build of that app, from a fresh shell.
      run "$command" fresh "$command" ;;
    "multipack build "* | "multipack run "* | "multipack ci "* | "multipack report "* | "multipack cache purge"*)
      verb="${command#multipack }"; verb="${verb%% *}"
      [ "$verb" = cache ] && verb="cache purge"
      check_options "$verb" "$command" ;;
    "multipack stack pull"* | "multipack stack list"* | "multipack stack prune"*)
      verb="${command#multipack stack }"; verb="stack ${verb%% *}"
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
done < <(for file in README.md docs/*.md; do
  awk '
    # A block indented 4 spaces, or more inside a list item; a synopsis continues on lines
    # indented further that start with `[-`.
    prev_blank && /^    +[^ ]/ { block = 1 }
    block && /^    / {
      text = $0
      sub(/^ +/, "", text)
      if (text ~ /^(apt-get |swift |heroku |multipack|scripts\/|benchmarks\/|git |curl |\[-)/) print "    " text
      next
    }
    { block = 0; prev_blank = ($0 ~ /^$/) }
  ' "$file" | sed 's/^    *\[/    [/'
done)

exit "$failed"
