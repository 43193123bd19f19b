#!/usr/bin/env bash
# `make run`: the whole gateway on this machine, no AWS account needed.
#   - moto (the AWS stand-in) with the table and KMS key from template.yaml
#   - the Alipay simulator (its own TEST key; verifies requests with the KMS key's public half),
#     and a second one for the second channel (a second application, key and KMS key); and a
#     simulated Antom for the Antom channel (its own KMS key; USD, EUR, GBP, JPY, IDR, HKD)
#   - the three HTTP functions and the reconcile function under `cargo lambda watch`, and the
#     sweeper every 2 s (`make reconcile` reconciles today's simulated day)
#   - the merchant API under one base URL, routed exactly as template.yaml routes it, checking
#     SigV4 as API Gateway's IAM authorization does; and a demo shop's return page
# Ctrl-C stops everything. Ports: API_PORT (3000), SHOP_PORT (3001), SIMULATOR_PORT (9100),
# SIMULATOR2_PORT (9101), ANTOM_PORT (9102), ANTOM_SFTP_PORT (9122), FUNCTIONS_PORT (9000). LOCAL_STATE (.local) holds logs and pids.
#
# Every process it starts runs in its own process group, recorded in $LOCAL_STATE/run-local.pids,
# and is stopped by group: on Ctrl-C, on a failed start, when a component dies, and (through a
# watcher that outlives this script) when this script is killed outright.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=${LOCAL_STATE:-$root/.local}
mkdir -p "$state"
state=$(cd "$state" && pwd)
pidfile="$state/run-local.pids"

say() { printf '\033[1m==> %s\033[0m (%ds)\n' "$*" "$SECONDS"; }

# A process's descendants (cargo lambda starts each function in a process group of its own).
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# Stops every recorded process group and everything under it: TERM, up to 5 s, then KILL.
stop_recorded() {
  [[ -f "$pidfile" ]] || return 0
  local pid name all=()
  while read -r pid name; do
    [[ -n "$pid" ]] || continue
    local tree=("$pid" $(descendants "$pid"))
    all+=("${tree[@]}")
    # cargo lambda watch logs an ERROR for each function it sees stopped under it; it and its
    # functions hold no state, so they are killed outright, cargo lambda first.
    if [[ $name == *"cargo lambda"* ]]; then
      kill -KILL -- "-$pid" 2>/dev/null || true
      kill -KILL "${tree[@]}" 2>/dev/null || true
    else
      kill -TERM -- "-$pid" 2>/dev/null || true
      kill -TERM "${tree[@]}" 2>/dev/null || true
    fi
  done < "$pidfile"
  for _ in $(seq 1 50); do
    local alive=no p
    for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=yes; done
    [[ $alive == yes ]] || break
    sleep 0.1
  done
  kill -KILL "${all[@]}" 2>/dev/null || true
  rm -f "$pidfile" "$state/endpoints.json"
}

# The watcher: waits for the make run script to end, however it ends, then stops what it
# started. (`kill -9` runs no trap; this process is in a session of its own and outlives it.)
if [[ "${1:-}" == "--reap" ]]; then
  while kill -0 "$2" 2>/dev/null; do sleep 0.5; done
  stop_recorded
  exit 0
fi

# A previous run that was killed together with its watcher: stop what it left.
if [[ -s "$pidfile" ]]; then
  say "stopping what an earlier make run left running"
  stop_recorded
fi

API_PORT=${API_PORT:-3000}
SHOP_PORT=${SHOP_PORT:-3001}
SIMULATOR_PORT=${SIMULATOR_PORT:-9100}
FUNCTIONS_PORT=${FUNCTIONS_PORT:-9000}
SIMULATOR2_PORT=${SIMULATOR2_PORT:-9101}
ANTOM_PORT=${ANTOM_PORT:-9102}
ANTOM_SFTP_PORT=${ANTOM_SFTP_PORT:-9122}
ANTOM_CLIENT_ID=SANDBOX_5YLOCAL0001
APP_ID=2021000000000001
SELLER_ID=2088000000000001
APP_ID_2=2021000000000002
SELLER_ID_2=2088000000000002

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$API_PORT" "$SHOP_PORT" "$SIMULATOR_PORT" "$SIMULATOR2_PORT" "$FUNCTIONS_PORT" "$ANTOM_PORT" "$ANTOM_SFTP_PORT"; do
  port_free "$port" || { echo "port $port is in use (is make run already running?); set API_PORT/SHOP_PORT/SIMULATOR_PORT/SIMULATOR2_PORT/FUNCTIONS_PORT/ANTOM_PORT/ANTOM_SFTP_PORT" >&2; exit 1; }
done

# start NAME LOG COMMAND...: in its own process group, recorded.
start() {
  local name=$1 log=$2
  shift 2
  setsid "$@" > "$log" 2>&1 < /dev/null &
  echo "$! $name" >> "$pidfile"
  logs[$!]=$log
  # Stopped by this script on purpose: no "Killed" notice from bash.
  disown "$!"
}
declare -A logs=()

# The component that is no longer running, if any: says so, with the end of its log.
component_stopped() {
  local pid name
  while read -r pid name; do
    kill -0 "$pid" 2>/dev/null && continue
    echo "$name stopped $1" >&2
    if [[ -n "${logs[$pid]:-}" ]]; then
      echo "the end of ${logs[$pid]}:" >&2
      grep -v '^\s*$' "${logs[$pid]}" | tail -n 5 | cut -c1-300 >&2
    fi
    return 0
  done < "$pidfile"
  return 1
}

cleanup() {
  local code=$?
  trap - EXIT INT TERM HUP
  echo
  say "stopping the gateway"
  stop_recorded
  kill "$reaper" 2>/dev/null || true
  if [[ $code == 0 ]]; then
    say "stopped; nothing make run started is running"
  else
    echo "make run did not start or a component stopped; nothing it started is running (logs: $state/*.log)" >&2
  fi
  exit "$code"
}
on_signal() { exit 0; }
: > "$pidfile"
setsid "$0" --reap $$ < /dev/null > /dev/null 2>&1 &
reaper=$!
trap cleanup EXIT
trap on_signal INT TERM HUP

"$root/scripts/venv.sh" "$root/.venv" "$root/scripts/python/moto-requirements.txt"
"$root/scripts/venv.sh" "$root/.venv-tools" "$root/scripts/python/tools-requirements.txt"
# Where cargo puts the binaries: target/ unless CARGO_TARGET_DIR (or a cargo config) says otherwise.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/debug"
if [[ ! -x "$bin/local-api" ]]; then
  say "building the gateway (first run: several minutes on 2 cores; later runs take seconds)"
else
  say "building the gateway"
fi
cargo build -p local-stack -p alipay-sim --bins -p alipay-cli -p create-payment -p notify -p refund -p subscriptions -p sweeper -p reconcile 2>&1 \
  | grep --line-buffered -E '^\s*(Compiling|Finished|error|warning: unused)|^error' || true
[[ ${PIPESTATUS[0]} == 0 ]] || { echo "the build failed" >&2; exit 1; }

# The test clock every process shares (the functions' debug builds, the sweeper, the
# simulators): milliseconds ahead of the machine's. `make clock ADVANCE=1d` moves it.
export TEST_CLOCK_FILE="$state/test-clock"
echo 0 > "$TEST_CLOCK_FILE"

say "starting the AWS stand-in (moto)"
export MOTO_STATE="$state"
AWS_ENDPOINT_URL=$("$root/scripts/moto.sh" start)
moto_pid=$(cat "$state/moto.pid")
echo "$moto_pid moto" >> "$pidfile"
logs[$moto_pid]="$state/moto.log"
export AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

say "creating the orders table, the two KMS signing keys and the reports bucket (from template.yaml)"
stack=$("$bin/local-bootstrap")
table=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["table"])' "$stack")
key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kms_key_id"])' "$stack")
key2=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secondary_kms_key_id"])' "$stack")
antom_key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["antom_kms_key_id"])' "$stack")
bucket=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bucket"])' "$stack")
# The template's default fraud rules unless RISK_RULES is given ('{}' turns them off).
RISK_RULES=${RISK_RULES:-$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["risk_rules"])' "$stack")}
"$bin/alipay-cli" public-key --kms-key-id "$key" > "$state/app_public_key.txt"
"$bin/alipay-cli" public-key --kms-key-id "$key2" > "$state/app2_public_key.txt"
"$bin/alipay-cli" public-key --kms-key-id "$antom_key" > "$state/antom_merchant_public_key.txt"

# ALIPAY_MODE=certificate: the applications in certificate mode (公钥证书), set up as a merchant
# does: a CSR signed in KMS (alipay-cli csr), certificates from the (simulated) open platform,
# the three files in S3 (s3://<bucket>/alipay/{primary,secondary}/), read by the functions.
mode=${ALIPAY_MODE:-key}
primary_certs=() secondary_certs=()
if [ "$mode" = certificate ]; then
  say "certificate mode: requesting the application certificates with CSRs signed in KMS"
  mkdir -p "$state/certs/primary" "$state/certs/secondary"
  rm -f "$state"/certs/*/*.crt
  "$bin/alipay-cli" csr --kms-key-id "$key" --subject "CN=$APP_ID,C=CN" > "$state/certs/primary/app.csr"
  "$bin/alipay-cli" csr --kms-key-id "$key2" --subject "CN=$APP_ID_2,C=CN" > "$state/certs/secondary/app.csr"
  primary_certs=(--certificates "$state/certs/primary" --serial 100)
  secondary_certs=(--certificates "$state/certs/secondary" --serial 200)
elif [ "$mode" != key ]; then
  echo "ALIPAY_MODE must be key or certificate, not $mode" >&2
  exit 2
fi

say "starting the Alipay simulator on :$SIMULATOR_PORT"
start "the Alipay simulator" "$state/simulator.log" \
  "$bin/alipay-simulator" --port "$SIMULATOR_PORT" --app-id "$APP_ID" --seller-id "$SELLER_ID" \
  --app-public-key "$state/app_public_key.txt" \
  --alipay-private-key "$root/tests/fixtures/keys/alipay_private_key.pem" "${primary_certs[@]}"
say "starting the second channel's Alipay application (simulated) on :$SIMULATOR2_PORT"
start "the second Alipay simulator" "$state/simulator2.log" \
  "$bin/alipay-simulator" --port "$SIMULATOR2_PORT" --app-id "$APP_ID_2" --seller-id "$SELLER_ID_2" \
  --app-public-key "$state/app2_public_key.txt" \
  --alipay-private-key "$root/tests/fixtures/keys/alipay2_private_key.pem" "${secondary_certs[@]}"
# Antom's SFTP server (reports), as Antom runs it: key login only, its own host key (pinned by
# the gateway), read-only; the client key in the stand-in's SSM, where the function reads it.
say "starting Antom's SFTP server (simulated reports, asyncssh) on :$ANTOM_SFTP_PORT"
mkdir -p "$state/antom-sftp/root"
start "the Antom SFTP server" "$state/antom-sftp.log" \
  "$root/.venv/bin/python" "$root/scripts/python/sftp_server.py" --root "$state/antom-sftp/root" \
  --keys "$state/antom-sftp/keys" --port "$ANTOM_SFTP_PORT"
for _ in $(seq 1 100); do
  grep -q '"host_key"' "$state/antom-sftp.log" 2>/dev/null && break
  sleep 0.1
done
sftp_info=$(grep -m1 '"host_key"' "$state/antom-sftp.log") || { echo "the SFTP server did not start (see $state/antom-sftp.log)" >&2; exit 1; }
ANTOM_SFTP_HOST_KEY=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["host_key"])' "$sftp_info")
ANTOM_SFTP_USER=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["user"])' "$sftp_info")
ANTOM_SFTP_KEY_PARAMETER=/alipay-gateway-local/antom-sftp-key
"$root/.venv/bin/python" - "$ANTOM_SFTP_KEY_PARAMETER" "$state/antom-sftp/keys/client_key" <<'PY'
import sys, boto3
with open(sys.argv[2]) as f:
    boto3.client("ssm").put_parameter(Name=sys.argv[1], Type="SecureString", Value=f.read(), Overwrite=True)
PY
say "starting the Antom channel's account (simulated Antom, cross-border currencies) on :$ANTOM_PORT"
start "the Antom simulator" "$state/antom.log" \
  "$bin/antom-simulator" --port "$ANTOM_PORT" --client-id "$ANTOM_CLIENT_ID" \
  --merchant-public-key "$state/antom_merchant_public_key.txt" \
  --antom-private-key "$root/tests/fixtures/keys/antom_private_key.pem" \
  --reports-dir "$state/antom-sftp/root"
if [ "$mode" = certificate ]; then
  for channel in primary secondary; do
    for _ in $(seq 1 100); do
      [ -s "$state/certs/$channel/appCertPublicKey.crt" ] && break
      sleep 0.1
    done
    [ -s "$state/certs/$channel/appCertPublicKey.crt" ] || { echo "the simulator issued no certificate for $channel" >&2; exit 1; }
  done
  "$root/.venv/bin/python" - "$bucket" "$state/certs" <<'PY'
import sys, boto3
bucket, folder = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3")
for channel in ("primary", "secondary"):
    for name in ("appCertPublicKey.crt", "alipayCertPublicKey_RSA2.crt", "alipayRootCert.crt"):
        with open(f"{folder}/{channel}/{name}", "rb") as f:
            s3.put_object(Bucket=bucket, Key=f"alipay/{channel}/{name}", Body=f.read())
PY
  say "certificates in s3://$bucket/alipay/ (app_cert_sn $("$bin/alipay-cli" cert-sn --app-cert "$state/certs/primary/appCertPublicKey.crt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["app_cert_sn"])'))"
fi

say "starting the functions with cargo lambda watch on :$FUNCTIONS_PORT"
export ORDERS_TABLE="$table" KMS_KEY_ID="$key" ALIPAY_APP_ID="$APP_ID" ALIPAY_SELLER_ID="$SELLER_ID"
if [ "$mode" = certificate ]; then
  unset ALIPAY_PUBLIC_KEY SECONDARY_ALIPAY_PUBLIC_KEY
  for prefix in "" SECONDARY_; do
    channel=primary; [ -n "$prefix" ] && channel=secondary
    export "${prefix}ALIPAY_APP_CERT=s3://$bucket/alipay/$channel/appCertPublicKey.crt"
    export "${prefix}ALIPAY_CERT=s3://$bucket/alipay/$channel/alipayCertPublicKey_RSA2.crt"
    export "${prefix}ALIPAY_ROOT_CERT=s3://$bucket/alipay/$channel/alipayRootCert.crt"
  done
else
  ALIPAY_PUBLIC_KEY=$(cat "$root/tests/fixtures/keys/alipay_public_key.pem")
  export ALIPAY_PUBLIC_KEY
fi
export ALIPAY_GATEWAY_URL="http://127.0.0.1:$SIMULATOR_PORT/gateway.do"
# The second channel: new payments go there while the primary's circuit is open.
export SECONDARY_ALIPAY_APP_ID="$APP_ID_2" SECONDARY_ALIPAY_SELLER_ID="$SELLER_ID_2" SECONDARY_KMS_KEY_ID="$key2"
if [ "$mode" = key ]; then
  SECONDARY_ALIPAY_PUBLIC_KEY=$(cat "$root/tests/fixtures/keys/alipay2_public_key.pem")
  export SECONDARY_ALIPAY_PUBLIC_KEY
fi
export SECONDARY_ALIPAY_GATEWAY_URL="http://127.0.0.1:$SIMULATOR2_PORT/gateway.do"
# The Antom channel: payments in these currencies go to the simulated Antom, settled in CNY.
# Antom's public key as one line (bare Base64), so that sweeper.env can hold it.
ANTOM_PUBLIC_KEY=$(grep -v -- '-----' "$root/tests/fixtures/keys/antom_public_key.pem" | tr -d '\n')
export ANTOM_CLIENT_ID ANTOM_PUBLIC_KEY ANTOM_KMS_KEY_ID="$antom_key" \
  ANTOM_GATEWAY_URL="http://127.0.0.1:$ANTOM_PORT" ANTOM_CURRENCIES=USD,EUR,GBP,JPY,IDR,HKD \
  ANTOM_SETTLEMENT_CURRENCY=CNY ANTOM_REDIRECT_URL="http://127.0.0.1:$SHOP_PORT/antom/done" \
  ANTOM_NOTIFY_URL="http://127.0.0.1:$FUNCTIONS_PORT/lambda-url/notify/notify/antom"
# Antom's reports: over SFTP from the local server, reconciled like a bill (make reconcile CHANNEL=antom).
export ANTOM_SFTP_HOST=127.0.0.1 ANTOM_SFTP_PORT ANTOM_SFTP_USER ANTOM_SFTP_HOST_KEY ANTOM_SFTP_KEY_PARAMETER \
  ANTOM_REPORTS_ROOT=/v1/settlements/1022188000000000001 ANTOM_SETTLEMENT_DAYS=2
# The breaker scaled down too: 5 calls, 10 s of cool-down (production: 10 calls, 30 s).
export BREAKER_MIN_CALLS=${BREAKER_MIN_CALLS:-5} BREAKER_COOL_DOWN_SECONDS=${BREAKER_COOL_DOWN_SECONDS:-10}
export ALIPAY_NOTIFY_URL="http://127.0.0.1:$FUNCTIONS_PORT/lambda-url/notify/"
export RETURN_URL_PREFIXES="http://127.0.0.1:$SHOP_PORT/,http://localhost:$SHOP_PORT/"
# The functions log at info; cargo lambda itself only when something goes wrong.
export RUST_LOG=${RUST_LOG:-info}
# Alipay's delays scaled down, so stuck work is finished within seconds (production: 10 s
# before a refund query, 60 s of grace after time_expire, up to 1 h between sweeps).
export REFUND_QUERY_DELAY_MS=1000 EXPIRY_GRACE_MS=2000 SWEEP_BACKOFF_MAX_MS=10000
export RECONCILE_BUCKET="$bucket" RECONCILE_WORK_DIR="$state"
export RISK_RULES
# For `make sweep`: the same environment (Alipay's public key is read from its file there).
env | grep -E '^(AWS_ENDPOINT_URL|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_REGION|AWS_DEFAULT_REGION|ORDERS_TABLE|KMS_KEY_ID|ALIPAY_APP_ID|ALIPAY_SELLER_ID|ALIPAY_GATEWAY_URL|ALIPAY_NOTIFY_URL|RETURN_URL_PREFIXES|REFUND_QUERY_DELAY_MS|EXPIRY_GRACE_MS|SWEEP_BACKOFF_MAX_MS|RECONCILE_BUCKET|RECONCILE_WORK_DIR|RISK_RULES|TEST_CLOCK_FILE|SECONDARY_ALIPAY_APP_ID|SECONDARY_ALIPAY_SELLER_ID|SECONDARY_KMS_KEY_ID|SECONDARY_ALIPAY_GATEWAY_URL|ANTOM_[A-Z_]+|BREAKER_[A-Z_]+|(SECONDARY_)?ALIPAY_(APP_|ROOT_)?CERT)=' \
  | sed "s/=\(.*\)/='\1'/" > "$state/sweeper.env"
# Each function process serves up to GATEWAY_MAX_CONCURRENCY requests at once, as on Lambda
# Managed Instances (cargo lambda forces AWS_LAMBDA_MAX_CONCURRENCY=1 on what it starts; the
# functions take this variable in its place). GATEWAY_MAX_CONCURRENCY=1 runs them as classic
# Lambda does.
export GATEWAY_MAX_CONCURRENCY=${GATEWAY_MAX_CONCURRENCY:-8}
start "the functions (cargo lambda watch)" "$state/functions.log" \
  env RUST_LOG=error "$root/.venv-tools/bin/cargo-lambda" lambda watch --quiet \
  --invoke-address 127.0.0.1 --invoke-port "$FUNCTIONS_PORT"

say "starting the sweeper (every 2 s; the Lambda runs on an EventBridge schedule)"
start "the sweeper" "$state/sweeper.log" "$bin/local-sweeper" --every-ms 2000

say "publishing the table's changes as events (stream -> publisher -> EventBridge bus on the stand-in)"
rm -f "$state/events.jsonl"
# Its standard output (one line per event) shows below; its diagnostics go to events.log.
setsid "$bin/local-events" --log "$state/events.jsonl" 2> "$state/events.log" < /dev/null &
echo "$! the event publisher" >> "$pidfile"
disown "$!"

say "serving the merchant API on :$API_PORT (routes from template.yaml, SigV4 checked) and the demo shop on :$SHOP_PORT"
start "the local API" "$state/api.log" \
  "$bin/local-api" --port "$API_PORT" --shop-port "$SHOP_PORT" --functions "http://127.0.0.1:$FUNCTIONS_PORT"

say "waiting for the functions to start (cargo lambda watch builds them the first time)"
for function in create-payment refund subscriptions notify; do
  failures=0
  started=no
  for _ in $(seq 1 900); do
    component_stopped "while starting" && exit 1
    code=$(python3 - "$FUNCTIONS_PORT" "$function" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/lambda-url/{sys.argv[2]}/warmup", timeout=5)
    print(200)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)
    if [[ "$code" =~ ^[1-4][0-9][0-9]$ ]]; then started=yes; break; fi
    # Built, started and failed (a configuration error, say): three times is not a fluke.
    if [[ "$code" =~ ^5[0-9][0-9]$ ]]; then
      failures=$((failures + 1))
      if (( failures >= 3 )); then
        echo "$function fails to start (HTTP $code three times); the end of $state/functions.log:" >&2
        grep -v '^\s*$' "$state/functions.log" | tail -n 8 | cut -c1-400 >&2
        exit 1
      fi
    fi
    sleep 1
  done
  [[ $started == yes ]] || { echo "$function did not start in 15 minutes; see $state/functions.log" >&2; exit 1; }
done

cat > "$state/endpoints.json" <<JSON
{
  "api_base_url": "http://127.0.0.1:$API_PORT",
  "shop_url": "http://127.0.0.1:$SHOP_PORT",
  "notify_url": "$ALIPAY_NOTIFY_URL",
  "simulator_url": "http://127.0.0.1:$SIMULATOR_PORT",
  "secondary_simulator_url": "http://127.0.0.1:$SIMULATOR2_PORT",
  "antom_simulator_url": "http://127.0.0.1:$ANTOM_PORT",
  "antom_sftp_port": $ANTOM_SFTP_PORT,
  "functions_url": "http://127.0.0.1:$FUNCTIONS_PORT",
  "reports_bucket": "$bucket",
  "aws_access_key_id": "$AWS_ACCESS_KEY_ID",
  "aws_secret_access_key": "$AWS_SECRET_ACCESS_KEY",
  "region": "$AWS_REGION",
  "app_public_key_file": "$state/app_public_key.txt",
  "alipay_private_key_file": "$root/tests/fixtures/keys/alipay_private_key.pem"
}
JSON

say "ready"
cat <<TEXT

The gateway is running locally.
  Merchant API   http://127.0.0.1:$API_PORT      (routes of template.yaml; SigV4 as in AWS: key test,
                                             secret test, region us-east-1, service execute-api)
  Demo shop      http://127.0.0.1:$SHOP_PORT      (the return_url page buyers come back to)
  Notify URL     $ALIPAY_NOTIFY_URL
  Alipay (sim.)  http://127.0.0.1:$SIMULATOR_PORT   (primary channel, app $APP_ID)
                 http://127.0.0.1:$SIMULATOR2_PORT   (secondary channel, app $APP_ID_2)
  Antom (sim.)   http://127.0.0.1:$ANTOM_PORT   (the Antom channel: USD, EUR, GBP, JPY, IDR, HKD; settled in CNY)
  Antom SFTP     127.0.0.1:$ANTOM_SFTP_PORT   (its reports, key login; the key in the stand-in's SSM)
  Endpoints and credentials for scripts: $state/endpoints.json; logs: $state/*.log

Create a payment (curl signs it: --aws-sigv4, as production's IAM authorization requires):
  SIGN=(--aws-sigv4 aws:amz:us-east-1:execute-api --user test:test)
  curl -s "\${SIGN[@]}" -X POST http://127.0.0.1:$API_PORT/payments -H 'content-type: application/json' \\
    -d '{"out_trade_no":"order_1","amount":"299.00","subject":"Demo order","channel":"page","return_url":"http://127.0.0.1:$SHOP_PORT/orders/order_1"}'
Then open the "url" of its next_step in a browser: that is the simulator's cashier; press Pay,
and Alipay sends you back to the demo shop's page for the order. Priced in another currency
("currency":"USD", "amount":"10.99") it goes to the Antom channel: its next_step is Antom's cashier.
  curl -s "\${SIGN[@]}" http://127.0.0.1:$API_PORT/payments/order_1            # the payment, with its refunds
  curl -s "\${SIGN[@]}" -X POST http://127.0.0.1:$API_PORT/payments/order_1/refunds -H 'content-type: application/json' -d '{"amount":"100.00","out_request_no":"order_1_r1"}'
  curl -s "\${SIGN[@]}" -X POST http://127.0.0.1:$API_PORT/payments/order_1/close    # close an unpaid payment
Unsigned, or signed with another secret: 403, as API Gateway answers.
The sweeper finishes pending refunds and ends expired payments every 2 s ($state/sweeper.log);
make sweep runs it once. make reconcile reconciles today's simulated day with the simulator's
bill (the reconcile function's scheduled run does yesterday's at 10:30 China time);
CHANNEL=antom make reconcile does the Antom channel's day from the reports on its SFTP server,
and make reconcile-demo shows one discrepancy of each kind there.
Or run the whole lifecycle in another terminal: make demo

An Alipay outage: make the primary application time out for a minute, then create payments:
  curl -s -X POST http://127.0.0.1:$SIMULATOR_PORT/sim/outage -d '{"kind":"timeout","seconds":60}'
After $BREAKER_MIN_CALLS failed calls its circuit opens (an event, channel.opened): new payments go to
the secondary channel (payment.alipay_channel), refunds of primary payments answer 503 at once.
Or all of it in one go: make outage

Every change is published as an event (payment.created, payment.paid, refund.succeeded, ...):
one line each below, in full in $state/events.jsonl.

Press Ctrl-C to stop.
TEXT
# Until Ctrl-C, or until a component stops on its own (then everything stops, and says which).
while sleep 1; do
  component_stopped "unexpectedly" && exit 1
done
