#!/usr/bin/env bash
# The tests that need `make run`'s whole stack (part of `make test`):
#   1. schemathesis fuzzes the merchant API from openapi.yaml (seeded, bounded), SigV4-signed;
#   2. a real browser (Chromium, selenium) pays page, wap and QR payments at the simulator;
#   3. make run itself: a clean Ctrl-C, a hard kill of the script, and a failed start each leave
#      nothing running; with CARGO_TARGET_DIR set elsewhere it runs what cargo built there.
# The stack runs on its own ports and state directory (.local/stack-test), beside any make run.
# FUZZ_CASES (40) and FUZZ_SEED (20261128) bound and fix the fuzzing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="$root/.local/stack-test"
# What an interrupted earlier run left (its record is in the state directory about to go).
if [[ -f "$state/run-local.pids" ]]; then
  while read -r pid _; do kill -KILL -- "-$pid" 2>/dev/null || true; done < "$state/run-local.pids"
fi
rm -rf "$state"
mkdir -p "$state"
export LOCAL_STATE="$state" API_PORT=3310 SHOP_PORT=3311 SIMULATOR_PORT=9110 SIMULATOR2_PORT=9111 FUNCTIONS_PORT=9010
ports=("$API_PORT" "$SHOP_PORT" "$SIMULATOR_PORT" "$SIMULATOR2_PORT" "$FUNCTIONS_PORT")

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { echo "stack tests: $*" >&2; exit 1; }

# cargo lambda watch restarts the functions when a file it watches changes (any file git does not
# ignore): the Python tests must not write their bytecode caches or hypothesis's data into the tree.
export PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_STORAGE_DIRECTORY="$state/hypothesis"
scripts/browser-deps.sh
scripts/venv.sh "$root/.venv-stack" "$root/scripts/python/stack-requirements.txt"
python="$root/.venv-stack/bin/python"

run_pid=""
# Starts make run's script in a process group of its own (as a terminal's foreground job).
start_run() {
  local out=$1
  shift
  rm -f "$state/endpoints.json"
  # A background job ignores SIGINT (and bash cannot trap what it inherits ignored): restore it
  # as a terminal's foreground job has it, in a session of its own.
  env "$@" python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' \
    "$root/scripts/run-local.sh" > "$out" 2>&1 < /dev/null &
  run_pid=$!
}
wait_ready() {
  local out=$1
  for _ in $(seq 1 1200); do
    [[ -f "$state/endpoints.json" ]] && return 0
    kill -0 "$run_pid" 2>/dev/null || { cat "$out" >&2; fail "make run ended before it was ready"; }
    sleep 1
  done
  fail "make run was not ready in 20 minutes"
}
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child $2"
    descendants "$child" "$2"
  done
}
# What make run started: every recorded process and everything under it (the functions).
started_by_run() {
  local pid name
  while read -r pid name; do
    echo "$pid $name"
    descendants "$pid" "$name"
  done < "$state/run-local.pids"
}
# Every process make run started, and every port it used, must be gone.
nothing_left() {
  local what=$1 pids=$2
  for _ in $(seq 1 100); do
    local left=""
    while read -r pid name; do
      [[ -n "$pid" ]] && ps -o stat= -p "$pid" 2>/dev/null | grep -qv Z && left+=" $name($pid)"
    done <<< "$pids"
    for port in "${ports[@]}"; do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && left+=" port:$port"
    done
    [[ -z "$left" ]] && { say "$what: nothing left running ($(wc -l <<< "$pids") processes stopped)"; return 0; }
    sleep 0.2
  done
  fail "$what left running:$left"
}
cleanup() {
  [[ -n "$run_pid" ]] && kill -TERM -- "-$run_pid" 2>/dev/null || true
  # The hard-linked target directory (below) keeps replaced build outputs alive: never leave it.
  rm -rf "$state/target-elsewhere" "$state/target-elsewhere.tmp"
}
trap cleanup EXIT

say "starting make run's stack on :$API_PORT (state in $state)"
start_run "$state/run-1.out"
wait_ready "$state/run-1.out"
grep -E '==>' "$state/run-1.out" | sed 's/\x1b\[[0-9;]*m//g'

say "schemathesis against the merchant API (openapi.yaml)"
(cd tests/stack && "$python" fuzz_contract.py "$state" "${FUZZ_CASES:-40}" "${FUZZ_SEED:-20261128}")

say "a buyer in Chromium: page, wap and QR payments"
(cd tests/stack && SE_OFFLINE=true "$python" browser.py "$state")

say "concurrent requests in one function process (GATEWAY_MAX_CONCURRENCY), and the refund race there"
(cd tests/stack && "$python" concurrency.py "$state")

say "Ctrl-C stops everything"
recorded=$(started_by_run)
kill -INT -- "-$run_pid"
for _ in $(seq 1 200); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$run_pid" 2>/dev/null && fail "make run did not stop within 20 s of Ctrl-C"
wait "$run_pid" && code=0 || code=$?
[[ $code == 0 ]] || fail "make run exited $code after Ctrl-C"
grep -q "stopped; nothing make run started is running" "$state/run-1.out" || fail "no clean stop message"
nothing_left "Ctrl-C" "$recorded"

say "CARGO_TARGET_DIR elsewhere: make run runs what cargo built there"
# A developer's target directory elsewhere (shared between checkouts): a hard-linked copy of this
# one, so cargo finds everything fresh and nothing is built twice.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
elsewhere="$state/target-elsewhere"
cp -al "$target_dir/debug" "$elsewhere.tmp" && mkdir -p "$elsewhere" && mv "$elsewhere.tmp" "$elsewhere/debug"
start_run "$state/run-2.out" CARGO_TARGET_DIR="$elsewhere"
wait_ready "$state/run-2.out"
recorded=$(started_by_run)
# Every process make run started from a build (the local API, the simulators, the sweeper, the
# event pump, the functions) runs an executable from CARGO_TARGET_DIR, none from target/.
from_elsewhere=0
while read -r pid name; do
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case "$exe" in
    "$elsewhere"/*) from_elsewhere=$((from_elsewhere + 1)) ;;
    "$target_dir"/*) fail "with CARGO_TARGET_DIR=$elsewhere, $name ran $exe" ;;
  esac
done <<< "$recorded"
(( from_elsewhere >= 8 )) || fail "only $from_elsewhere processes ran from CARGO_TARGET_DIR"
say "$from_elsewhere processes ran from CARGO_TARGET_DIR, none from target/"

say "a hard kill (SIGKILL) of make run's script stops everything"
kill -KILL "$run_pid"
nothing_left "kill -9" "$recorded"
rm -rf "$elsewhere"

say "a failed start (a function's configuration is wrong) stops everything and says why"
start_run "$state/run-3.out" RISK_RULES='{not json'
# (what it started, copied while it runs: it removes its own record when it stops)
for _ in $(seq 1 1200); do
  kill -0 "$run_pid" 2>/dev/null || break
  [[ -f "$state/run-local.pids" ]] && started_by_run > "$state/run-3.out.pids.new" 2>/dev/null \
    && mv "$state/run-3.out.pids.new" "$state/run-3.out.pids"
  sleep 0.5
done
kill -0 "$run_pid" 2>/dev/null && fail "make run kept waiting on a function that cannot start"
wait "$run_pid" && code=0 || code=$?
run_pid=""
[[ $code != 0 ]] || fail "make run exited 0 although a function cannot start"
grep -E "fails to start|stopped while starting" "$state/run-3.out" >&2 || fail "no message names what failed"
grep -q "RISK_RULES is not valid" "$state/run-3.out" || fail "the message does not say why"
recorded=$(grep -E '^[0-9]+ ' "$state/run-3.out.pids" 2>/dev/null || true)
nothing_left "failed start" "$recorded"
say "stack tests passed"
