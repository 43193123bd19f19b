"""Concurrent requests on make run's stack, whose functions each run in one process serving up to
GATEWAY_MAX_CONCURRENCY requests at once (`lambda_http::run_concurrent`, as on Lambda Managed
Instances).

1. One process serves several requests at once: with Alipay answering each precreate 2 s late
   (the simulator's `slow` fault), 6 QR payments created at the same moment all finish in well
   under the 12 s that one at a time would take, and cargo lambda runs a single create-payment
   process.
2. The refund race holds there too: 10 refunds of 3.00 at once against a 10.00 payment; exactly 3
   are reserved and end SUCCEEDED, the other 7 are refused with `amount_exceeds_refundable`, and
   the simulator's ledger (Alipay's side) saw exactly 3 refund requests and refunded 9.00.

Usage: concurrency.py STATE_DIR
"""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from sigv4 import endpoints, session

SLOW_MS = 2000
PAYMENTS = 6


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def processes(binary):
    """Running processes of a function's debug binary (as cargo lambda starts them)."""
    out = subprocess.run(["pgrep", "-f", f"target/debug/{binary}$"], capture_output=True, text=True)
    return [line for line in out.stdout.split() if line.strip()]


def main():
    state = sys.argv[1]
    local = endpoints(state)
    api, simulator = local["api_base_url"], local["simulator_url"]
    signed = session(local)
    stamp = int(time.time() * 1000)

    # 1. Several requests at once in one process.
    fault = {"target": "alipay.trade.precreate", "kind": {"slow": {"ms": SLOW_MS}}, "times": PAYMENTS}
    expect(requests.post(f"{simulator}/sim/faults", json=fault, timeout=10).status_code == 204, "fault")

    def create(i):
        body = {"out_trade_no": f"conc_{stamp}_{i}", "amount": "1.00", "subject": "并发", "channel": "qr"}
        return signed.post(f"{api}/payments", json=body, timeout=60)

    started = time.monotonic()
    with ThreadPoolExecutor(PAYMENTS) as pool:
        answers = list(pool.map(create, range(PAYMENTS)))
    elapsed = time.monotonic() - started
    for answer in answers:
        expect(answer.status_code == 201, f"create answered {answer.status_code} {answer.text}")
    one_at_a_time = PAYMENTS * SLOW_MS / 1000
    expect(elapsed < one_at_a_time / 2,
           f"{PAYMENTS} creates with a {SLOW_MS} ms Alipay took {elapsed:.1f} s (one at a time: {one_at_a_time:.0f} s)")
    running = processes("create-payment")
    expect(len(running) == 1, f"expected one create-payment process, found {running}")
    print(f"  {PAYMENTS} QR payments at once, each precreate answered after {SLOW_MS} ms: "
          f"{elapsed:.1f} s in one process (one at a time: {one_at_a_time:.0f} s)")

    # 2. The refund race.
    no = f"conc_{stamp}_race"
    body = {"out_trade_no": no, "amount": "10.00", "subject": "并发退款", "channel": "qr"}
    created = signed.post(f"{api}/payments", json=body, timeout=60)
    expect(created.status_code == 201, f"create answered {created.status_code} {created.text}")
    # From the buyer's balance: each refund moves money in its call (a bank card's would be
    # executed later and asked about again, and the count of requests below would be more).
    paid = requests.post(f"{simulator}/sim/pay", json={"out_trade_no": no, "fund_channel": "ALIPAYACCOUNT"},
                         timeout=10)
    expect(paid.status_code == 200, f"pay answered {paid.status_code} {paid.text}")
    for _ in range(300):
        if signed.get(f"{api}/payments/{no}", timeout=30).json().get("status") == "PAID":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"{no} never became PAID")

    def refund(i):
        return signed.post(f"{api}/payments/{no}/refunds",
                           json={"amount": "3.00", "out_request_no": f"r{i}"}, timeout=60)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(refund, range(10)))
    # Reserved: answered 201 (sent and settled) or 202 (sent later: Alipay wants refunds of one
    # trade spaced apart; the function or the sweeper sends it).
    reserved = [a.json()["refund"]["out_request_no"] for a in answers if a.status_code in (201, 202)]
    refused = [a for a in answers if a.status_code == 422
               and a.json().get("error", {}).get("code") == "amount_exceeds_refundable"]
    expect(len(reserved) == 3 and len(refused) == 7,
           "expected 3 refunds and 7 refusals, got " + ", ".join(f"{a.status_code} {a.text[:80]}" for a in answers))
    for out_request_no in reserved:
        for _ in range(600):
            status = signed.get(f"{api}/payments/{no}/refunds/{out_request_no}", timeout=30).json()["refund"]["status"]
            if status == "SUCCEEDED":
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"refund {out_request_no} is still {status} after 60 s")
    trade = requests.get(f"{simulator}/sim/trades/{no}", timeout=10).json()
    expect(trade["refunded_fen"] == 900, f"Alipay refunded {trade['refunded_fen']} fen")
    expect(len(trade["refund_requests_ms"]) == 3, f"Alipay was asked {len(trade['refund_requests_ms'])} times")
    print("  10 refunds of 3.00 at once against 10.00: 3 reserved and succeeded, 7 refused "
          "(amount_exceeds_refundable); Alipay asked 3 times, refunded 9.00")


if __name__ == "__main__":
    main()
