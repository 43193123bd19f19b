#!/usr/bin/env bash
# `make run`: the whole gateway on this machine, no AWS account needed.
#   - moto (the AWS stand-in) with the table and KMS key from template.yaml
#   - the Alipay simulator (its own TEST key; verifies requests with the KMS key's public half),
#     and a second one for the second channel (a second application, key and KMS key)
#   - the three HTTP functions and the reconcile function under `cargo lambda watch`, and the
#     sweeper every 2 s (`make reconcile` reconciles today's simulated day)
#   - the merchant API under one base URL, routed exactly as template.yaml routes it
# Ctrl-C stops everything. Ports: API_PORT (3000), SIMULATOR_PORT (9100), SIMULATOR2_PORT (9101),
# FUNCTIONS_PORT (9000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="$root/.local"
mkdir -p "$state"
API_PORT=${API_PORT:-3000}
SIMULATOR_PORT=${SIMULATOR_PORT:-9100}
FUNCTIONS_PORT=${FUNCTIONS_PORT:-9000}
SIMULATOR2_PORT=${SIMULATOR2_PORT:-9101}
APP_ID=2021000000000001
SELLER_ID=2088000000000001
APP_ID_2=2021000000000002
SELLER_ID_2=2088000000000002

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$API_PORT" "$SIMULATOR_PORT" "$SIMULATOR2_PORT" "$FUNCTIONS_PORT"; do
  port_free "$port" || { echo "port $port is in use (is make run already running?); set API_PORT/SIMULATOR_PORT/SIMULATOR2_PORT/FUNCTIONS_PORT" >&2; exit 1; }
done

pids=()
cleanup() {
  trap - EXIT INT TERM HUP
  say "stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -f "target/debug/(create-payment|notify|refund|reconcile)$" 2>/dev/null || true
  "$root/scripts/moto.sh" stop
  rm -f "$state/endpoints.json"
}
trap cleanup EXIT INT TERM HUP

say "installing what the local stack needs (first run only)"
"$root/scripts/venv.sh" "$root/.venv" "$root/scripts/python/moto-requirements.txt"
"$root/scripts/venv.sh" "$root/.venv-tools" "$root/scripts/python/tools-requirements.txt"
say "building the local tools and the functions"
cargo build --quiet -p gateway-tests --bins -p alipay-cli -p create-payment -p notify -p refund -p sweeper -p reconcile

say "starting the AWS stand-in (moto)"
AWS_ENDPOINT_URL=$("$root/scripts/moto.sh" start)
export AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

say "creating the orders table, the two KMS signing keys and the reports bucket (from template.yaml)"
stack=$("$root/target/debug/local-bootstrap")
table=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["table"])' "$stack")
key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kms_key_id"])' "$stack")
key2=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secondary_kms_key_id"])' "$stack")
bucket=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bucket"])' "$stack")
# The template's default fraud rules unless RISK_RULES is given ('{}' turns them off).
RISK_RULES=${RISK_RULES:-$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["risk_rules"])' "$stack")}
"$root/target/debug/alipay-cli" public-key --kms-key-id "$key" > "$state/app_public_key.txt"
"$root/target/debug/alipay-cli" public-key --kms-key-id "$key2" > "$state/app2_public_key.txt"

say "starting the Alipay simulator on :$SIMULATOR_PORT"
"$root/target/debug/alipay-simulator" --port "$SIMULATOR_PORT" --app-id "$APP_ID" --seller-id "$SELLER_ID" \
  --app-public-key "$state/app_public_key.txt" \
  --alipay-private-key "$root/tests/fixtures/keys/alipay_private_key.pem" > "$state/simulator.log" 2>&1 &
pids+=($!)
say "starting the second channel's Alipay application (simulated) on :$SIMULATOR2_PORT"
"$root/target/debug/alipay-simulator" --port "$SIMULATOR2_PORT" --app-id "$APP_ID_2" --seller-id "$SELLER_ID_2" \
  --app-public-key "$state/app2_public_key.txt" \
  --alipay-private-key "$root/tests/fixtures/keys/alipay2_private_key.pem" > "$state/simulator2.log" 2>&1 &
pids+=($!)

say "starting the functions with cargo lambda watch on :$FUNCTIONS_PORT"
export ORDERS_TABLE="$table" KMS_KEY_ID="$key" ALIPAY_APP_ID="$APP_ID" ALIPAY_SELLER_ID="$SELLER_ID"
ALIPAY_PUBLIC_KEY=$(cat "$root/tests/fixtures/keys/alipay_public_key.pem")
export ALIPAY_PUBLIC_KEY
export ALIPAY_GATEWAY_URL="http://127.0.0.1:$SIMULATOR_PORT/gateway.do"
# The second channel: new payments go there while the primary's circuit is open.
export SECONDARY_ALIPAY_APP_ID="$APP_ID_2" SECONDARY_ALIPAY_SELLER_ID="$SELLER_ID_2" SECONDARY_KMS_KEY_ID="$key2"
SECONDARY_ALIPAY_PUBLIC_KEY=$(cat "$root/tests/fixtures/keys/alipay2_public_key.pem")
export SECONDARY_ALIPAY_PUBLIC_KEY
export SECONDARY_ALIPAY_GATEWAY_URL="http://127.0.0.1:$SIMULATOR2_PORT/gateway.do"
# The breaker scaled down too: 5 calls, 10 s of cool-down (production: 10 calls, 30 s).
export BREAKER_MIN_CALLS=${BREAKER_MIN_CALLS:-5} BREAKER_COOL_DOWN_SECONDS=${BREAKER_COOL_DOWN_SECONDS:-10}
export ALIPAY_NOTIFY_URL="http://127.0.0.1:$FUNCTIONS_PORT/lambda-url/notify/"
export RETURN_URL_PREFIXES="http://127.0.0.1:$API_PORT/,http://localhost:$API_PORT/"
export RUST_LOG=${RUST_LOG:-info}
# Alipay's delays scaled down, so stuck work is finished within seconds (production: 10 s
# before a refund query, 60 s of grace after time_expire, up to 1 h between sweeps).
export REFUND_QUERY_DELAY_MS=1000 EXPIRY_GRACE_MS=2000 SWEEP_BACKOFF_MAX_MS=10000
export RECONCILE_BUCKET="$bucket" RECONCILE_WORK_DIR="$state"
export RISK_RULES
# For `make sweep`: the same environment (Alipay's public key is read from its file there).
env | grep -E '^(AWS_ENDPOINT_URL|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_REGION|AWS_DEFAULT_REGION|ORDERS_TABLE|KMS_KEY_ID|ALIPAY_APP_ID|ALIPAY_SELLER_ID|ALIPAY_GATEWAY_URL|ALIPAY_NOTIFY_URL|RETURN_URL_PREFIXES|REFUND_QUERY_DELAY_MS|EXPIRY_GRACE_MS|SWEEP_BACKOFF_MAX_MS|RECONCILE_BUCKET|RECONCILE_WORK_DIR|RISK_RULES|SECONDARY_ALIPAY_APP_ID|SECONDARY_ALIPAY_SELLER_ID|SECONDARY_KMS_KEY_ID|SECONDARY_ALIPAY_GATEWAY_URL|BREAKER_[A-Z_]+)=' \
  | sed "s/=\(.*\)/='\1'/" > "$state/sweeper.env"
"$root/.venv-tools/bin/cargo-lambda" lambda watch --invoke-address 127.0.0.1 --invoke-port "$FUNCTIONS_PORT" \
  > "$state/functions.log" 2>&1 &
pids+=($!)

say "starting the sweeper (every 2 s; the Lambda runs on an EventBridge schedule)"
"$root/target/debug/local-sweeper" --every-ms 2000 > "$state/sweeper.log" 2>&1 &
pids+=($!)

say "publishing the table's changes as events (stream -> publisher -> EventBridge bus on the stand-in)"
rm -f "$state/events.jsonl"
"$root/target/debug/local-events" --log "$state/events.jsonl" 2> "$state/events.log" &
pids+=($!)

say "serving the merchant API on :$API_PORT (routes from template.yaml)"
"$root/target/debug/local-api" --port "$API_PORT" --functions "http://127.0.0.1:$FUNCTIONS_PORT" > "$state/api.log" 2>&1 &
pids+=($!)

say "waiting for the functions to start (the first start compiles them)"
for function in create-payment refund notify; do
  for _ in $(seq 1 600); do
    code=$(python3 - "$FUNCTIONS_PORT" "$function" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/lambda-url/{sys.argv[2]}/warmup", timeout=5)
    print(200)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)
    [[ "$code" =~ ^[1-4][0-9][0-9]$ ]] && break
    sleep 1
  done
  [[ "$code" =~ ^[1-4][0-9][0-9]$ ]] || { echo "$function did not start; see $state/functions.log" >&2; tail -n 30 "$state/functions.log" >&2; exit 1; }
done

cat > "$state/endpoints.json" <<JSON
{
  "api_base_url": "http://127.0.0.1:$API_PORT",
  "notify_url": "$ALIPAY_NOTIFY_URL",
  "simulator_url": "http://127.0.0.1:$SIMULATOR_PORT",
  "secondary_simulator_url": "http://127.0.0.1:$SIMULATOR2_PORT",
  "functions_url": "http://127.0.0.1:$FUNCTIONS_PORT",
  "reports_bucket": "$bucket",
  "app_public_key_file": "$state/app_public_key.txt",
  "alipay_private_key_file": "$root/tests/fixtures/keys/alipay_private_key.pem"
}
JSON

cat <<TEXT

The gateway is running locally.
  Merchant API   http://127.0.0.1:$API_PORT      (routes of template.yaml; no SigV4 locally)
  Notify URL     $ALIPAY_NOTIFY_URL
  Alipay (sim.)  http://127.0.0.1:$SIMULATOR_PORT   (primary channel, app $APP_ID)
                 http://127.0.0.1:$SIMULATOR2_PORT   (secondary channel, app $APP_ID_2)
  Endpoints for scripts: .local/endpoints.json; logs: .local/*.log

Create a payment:
  curl -s -X POST http://127.0.0.1:$API_PORT/payments -H 'content-type: application/json' \\
    -d '{"out_trade_no":"order_$(date +%s)","amount":"299.00","subject":"Demo order","channel":"page","return_url":"http://127.0.0.1:$API_PORT/payments/"}'
Then open the "url" of its next_step in a browser: that is the simulator's cashier; press Pay.
  curl -s http://127.0.0.1:$API_PORT/payments/ORDER            # the payment, with its refunds
  curl -s -X POST http://127.0.0.1:$API_PORT/payments/ORDER/refunds -H 'content-type: application/json' -d '{"amount":"100.00","out_request_no":"ORDER_r1"}'
  curl -s -X POST http://127.0.0.1:$API_PORT/payments/ORDER/close    # close an unpaid payment
The sweeper finishes pending refunds and ends expired payments every 2 s (.local/sweeper.log);
make sweep runs it once. make reconcile reconciles today's simulated day with the simulator's
bill (the reconcile function's scheduled run does yesterday's at 10:30 China time).
Or run the whole lifecycle in another terminal: make demo

An Alipay outage: make the primary application time out for a minute, then create payments:
  curl -s -X POST http://127.0.0.1:$SIMULATOR_PORT/sim/outage -d '{"kind":"timeout","seconds":60}'
After $BREAKER_MIN_CALLS failed calls its circuit opens (an event, channel.opened): new payments go to
the secondary channel (payment.alipay_channel), refunds of primary payments answer 503 at once.
Or all of it in one go: make outage

Every change is published as an event (payment.created, payment.paid, refund.succeeded, ...):
one line each below, in full in .local/events.jsonl.

Press Ctrl-C to stop.
TEXT
wait -n "${pids[@]}" || true
echo "a component stopped; see .local/*.log" >&2
