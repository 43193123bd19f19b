#!/usr/bin/env python3
"""`make reconcile`: with `make run` going, reconcile one day (DATE, default today in China
time) through the real reconcile function under cargo lambda watch, as its schedule or an
operator invokes it. For today, the simulator is first told to issue today's bill early (Alipay
issues a day's bill only after it ends). Prints the summary and the report's CSV.
CHANNEL=secondary reconciles the second channel's bill (its own application, its own bill);
CHANNEL=antom the Antom channel's day: the simulated Antom first writes the day's reports (and
the next day's settlement of it) where the local SFTP server serves them."""
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    with open(os.path.join(root, ".local", "endpoints.json")) as f:
        endpoints = json.load(f)
except FileNotFoundError:
    sys.exit("start make run first")
env = {}
with open(os.path.join(root, ".local", "sweeper.env")) as f:
    for line in f:
        key, _, value = line.strip().partition("=")
        env[key] = value.strip("'")

today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
date = os.environ.get("DATE") or today
channel = os.environ.get("CHANNEL") or "primary"
if channel not in ("primary", "secondary", "antom"):
    sys.exit("CHANNEL is primary, secondary or antom")
simulator = endpoints[{"primary": "simulator_url", "secondary": "secondary_simulator_url",
                       "antom": "antom_simulator_url"}[channel]]


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=900) as answer:
        return answer.read()


if channel == "antom":
    written = json.loads(post(simulator + "/sim/reports", {"date": date}))
    print(f"==> the simulated Antom writes the reports of {date} to its SFTP server:")
    for name in written["files"]:
        print("    " + os.path.relpath(name, os.path.join(root, ".local", "antom-sftp", "root")))
elif date == today:
    post(simulator + "/sim/bills/close-day", {"date": date})
    print(f"==> the {channel} channel's simulator issues today's bill ({date}) early")
print(f"==> invoking the reconcile function for {date}, {channel} channel")
try:
    raw = post(endpoints["functions_url"] + "/2015-03-31/functions/reconcile/invocations",
               {"date": date, "channel": channel})
except urllib.error.HTTPError as error:
    sys.exit(f"reconcile failed: HTTP {error.code} {error.read().decode(errors='replace')}")
summary = json.loads(raw)
if "errorMessage" in summary:
    sys.exit(f"reconcile failed: {summary['errorMessage']}")
print(json.dumps(summary, ensure_ascii=False, indent=2))
key = f"reconciliation/{date}/report.csv" if channel == "primary" else f"reconciliation/{date}/{channel}/report.csv"
if summary.get("objects"):
    import boto3  # moto's own dependency, in .venv

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    body = s3.get_object(Bucket=endpoints["reports_bucket"], Key=key)["Body"].read()
    print(f"==> s3://{endpoints['reports_bucket']}/{key}")
    print(body.decode("utf-8-sig"))
