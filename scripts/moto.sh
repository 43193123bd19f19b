#!/usr/bin/env bash
# The local AWS stand-in: moto in server mode (requests serialized, see
# scripts/python/moto_serialized.py) on a free loopback port.
#   scripts/moto.sh start   install if needed, start, wait until healthy; prints the endpoint
#   scripts/moto.sh stop    stop the server this checkout started
#   scripts/moto.sh url     print the endpoint of the running server
# State lives in .local/ (git-ignored; MOTO_STATE overrides): moto.pid, moto.port, moto.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="${MOTO_STATE:-$root/.local}"
venv="$root/.venv"
mkdir -p "$state"

running() {
  [[ -f "$state/moto.pid" ]] && kill -0 "$(cat "$state/moto.pid")" 2>/dev/null
}

case "${1:-}" in
  start)
    if running; then
      echo "http://127.0.0.1:$(cat "$state/moto.port")"
      exit 0
    fi
    "$root/scripts/venv.sh" "$venv" "$root/scripts/python/moto-requirements.txt"
    port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # setsid: the server outlives this script and is stopped by its pid file.
    setsid "$venv/bin/python" "$root/scripts/python/moto_serialized.py" 127.0.0.1 "$port" >"$state/moto.log" 2>&1 < /dev/null &
    echo $! > "$state/moto.pid"
    echo "$port" > "$state/moto.port"
    for _ in $(seq 1 100); do
      if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
          "http://127.0.0.1:$port/moto-api/data.json" 2>/dev/null; then
        echo "http://127.0.0.1:$port"
        exit 0
      fi
      running || break
      sleep 0.1
    done
    echo "moto server did not become healthy on port $port; log:" >&2
    cat "$state/moto.log" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$state/moto.pid")
      kill "$pid" 2>/dev/null || true
      # A busy server can take a moment; never leave one behind.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/moto.pid" "$state/moto.port"
    ;;
  url)
    running || { echo "moto is not running (scripts/moto.sh start)" >&2; exit 1; }
    echo "http://127.0.0.1:$(cat "$state/moto.port")"
    ;;
  *)
    echo "usage: scripts/moto.sh start|stop|url" >&2
    exit 2
    ;;
esac
