"""schemathesis against make run's merchant API, generated from openapi.yaml.

Every operation gets CASES positive and CASES negative cases (seeded: SEED), each SigV4-signed by
botocore. Every answer must pass schemathesis's checks (no 5xx, a described status, content type,
headers and schema; negative data refused; the API refuses the request without its signature).
Afterwards, no payment or refund exists that a refused request would have made, and bodies not
sent as JSON are answered 415. Prints cases and statuses per operation; exits 1 on any failure.

Usage: fuzz_contract.py STATE_DIR [CASES] [SEED]
"""

import collections
import json
import os
import sys

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sigv4 import endpoints, session

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# (schemathesis's ignored_auth check re-sends through the same session, which signs every
# request: the refusal of unsigned and wrongly signed requests is checked below instead.)


def main():
    state = sys.argv[1]
    cases = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    the_seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20261128
    local = endpoints(state)
    api = local["api_base_url"]
    signed = session(local)
    schema = schemathesis.openapi.from_path(os.path.join(ROOT, "openapi.yaml"))

    counts = collections.defaultdict(collections.Counter)
    failures = []
    created_payments, refused_payments = set(), set()
    kept_refunds, refused_refunds = set(), set()

    def record(case, response):
        if case.method != "POST" or not isinstance(case.body, dict):
            return
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        ok = 200 <= response.status_code < 300
        if case.operation.path == "/payments":
            no = case.body.get("out_trade_no")
            if isinstance(no, str):
                (created_payments if ok else refused_payments).add(no)
        elif case.operation.path.endswith("/refunds"):
            no = case.body.get("out_request_no")
            key = (case.path_parameters.get("out_trade_no"), no)
            if isinstance(no, str):
                # A refund that exists (FAILED at Alipay, or kept PENDING) comes back in the answer.
                (kept_refunds if ok or "refund" in answer else refused_refunds).add(key)

    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @seed(the_seed)
            @settings(
                max_examples=cases,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                try:
                    response = case.call(base_url=api, session=signed, timeout=30)
                except requests.RequestException as error:
                    counts[label][f"{mode.value} no answer"] += 1
                    failures.append(f"{label} ({mode.value}): no answer: {error}")
                    return
                counts[label][f"{mode.value} {response.status_code}"] += 1
                record(case, response)
                try:
                    case.validate_response(response, checks=CHECKS)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as failure:  # schemathesis raises a FailureGroup
                    failures.append(f"{label} ({mode.value}): {str(failure)[:600]}")

            run()

    # Bodies not sent as JSON: 415, and nothing created.
    for content_type, body in [("text/plain", '{"out_trade_no":"fuzz_text_1","amount":"1.00","subject":"s","channel":"qr"}'),
                               ("application/x-www-form-urlencoded", "out_trade_no=fuzz_form_1&amount=1.00"),
                               (None, '{"out_trade_no":"fuzz_none_1","amount":"1.00","subject":"s","channel":"qr"}')]:
        headers = {"content-type": content_type} if content_type else {}
        response = signed.post(f"{api}/payments", data=body.encode(), headers=headers, timeout=30)
        counts["non-JSON POST /payments"][f"{content_type} {response.status_code}"] += 1
        if response.status_code != 415:
            failures.append(f"non-JSON body ({content_type}) answered {response.status_code}: {response.text[:200]}")
    refused_payments |= {"fuzz_text_1", "fuzz_form_1", "fuzz_none_1"}

    # Unsigned, or signed with another secret: 403 like API Gateway, nothing created.
    from sigv4 import SigV4
    body = json.dumps({"out_trade_no": "fuzz_auth_1", "amount": "1.00", "subject": "s", "channel": "qr"})
    wrong = dict(local, aws_secret_access_key="not-the-secret")
    for name, auth in [("unsigned", None), ("wrong secret", SigV4(wrong))]:
        response = requests.post(f"{api}/payments", data=body, auth=auth,
                                 headers={"content-type": "application/json"}, timeout=30)
        counts["auth POST /payments"][f"{name} {response.status_code}"] += 1
        if response.status_code != 403:
            failures.append(f"{name} request answered {response.status_code}: {response.text[:200]}")
    refused_payments.add("fuzz_auth_1")

    # Nothing exists that only a refused request would have made.
    leaked = []
    for no in sorted(refused_payments - created_payments):
        response = signed.get(f"{api}/payments/{no}", timeout=30)
        if response.status_code not in (400, 404):
            leaked.append(f"payment {no!r}: {response.status_code}")
    for trade, no in sorted(refused_refunds - kept_refunds, key=str):
        if not isinstance(trade, str):
            continue
        response = signed.get(f"{api}/payments/{trade}/refunds/{no}", timeout=30)
        if response.status_code not in (400, 404):
            leaked.append(f"refund {trade!r}/{no!r}: {response.status_code}")
    failures += [f"created by a refused request: {x}" for x in leaked]

    print(f"schemathesis {schemathesis.SCHEMATHESIS_VERSION}, seed {the_seed}, {cases} cases per operation and mode")
    print("| operation | cases | answers (mode status: count) |")
    print("|---|---:|---|")
    for label, counter in counts.items():
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counter.items()))
        print(f"| {label} | {sum(counter.values())} | {detail} |")
    print(f"refused creates checked: {len(refused_payments - created_payments)} payments, "
          f"{len(refused_refunds - kept_refunds)} refunds; leaked: {len(leaked)}")
    print(f"failures: {len(failures)}")
    for failure in failures[:30]:
        print("  -", failure.replace("\n", " "))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
