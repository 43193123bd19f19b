"""Ant International's Python SDK (global-open-sdk-python 1.7.1) as an oracle for the Antom
differential tests (tests/it/differential/antom.rs).

Reads the cases (JSON) on stdin and writes, on stdout, what the SDK makes of them:
  - requests: the signature its `signature_tool.sign` gives (URL-encoded Base64), over the
    method, path, client id, request time and body given;
  - responses: each signed by its `sign` with Antom's key, then for the answer as sent and for
    each tampered copy, the verdict of its client's own checks (`__parse_header` then
    `__assert_response_verified`, as `DefaultAlipayClient.execute` runs them);
  - notifications: each signed the same way, and `webhook_tool.check_signature`'s verdict on it
    and on each tampered copy;
  - amounts: its `amount_util.to_amount` / `from_amount` / `validate` on each case.
A verdict is true (accepted) or false (refused, whatever the exception).
"""

import json
import sys
from urllib.parse import unquote_plus

from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.tools import amount_util, signature_tool, webhook_tool


def pem(text):
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def header_pairs(headers):
    return [(name, value) for name, value in headers.items() if value is not None]


def response_verdict(client, message):
    """As DefaultAlipayClient.execute does after the POST: read the headers, then verify."""
    try:
        signature, response_time, client_id = client._DefaultAlipayClient__parse_header(
            header_pairs(message["headers"])
        )
        client._DefaultAlipayClient__assert_response_verified(
            message["method"], message["path"], client_id, response_time, message["body"], signature
        )
        return True
    except Exception:
        return False


def notification_verdict(antom_public_key, message):
    headers = message["headers"]
    try:
        return bool(
            webhook_tool.check_signature(
                "POST",
                message["path"],
                headers.get("client-id"),
                headers.get("request-time"),
                message["body"],
                headers.get("signature"),
                antom_public_key,
            )
        )
    except Exception:
        return False


def signed(case, antom_private_key, time_header):
    signature = signature_tool.sign(
        case["method"], case["path"], case["client_id"], case["time"], case["body"], antom_private_key
    )
    return {
        "method": case["method"],
        "path": case["path"],
        "body": case["body"],
        "headers": {
            "client-id": case["client_id"],
            time_header: case["time"],
            "signature": "algorithm=RSA256,keyVersion=1,signature=" + signature,
        },
    }


def tampered(message, change):
    copy = json.loads(json.dumps(message))
    kind, value = change
    if kind == "body":
        copy["body"] = value
    elif kind == "path":
        copy["path"] = value
    elif kind == "unencoded":
        head, encoded = copy["headers"]["signature"].split("signature=")
        copy["headers"]["signature"] = head + "signature=" + unquote_plus(encoded)
    elif kind == "lowercase":
        head, encoded = copy["headers"]["signature"].split("signature=")
        for escape in ("%2B", "%2F", "%3D"):
            encoded = encoded.replace(escape, escape.lower())
        copy["headers"]["signature"] = head + "signature=" + encoded
    elif kind == "drop":
        copy["headers"][value] = None
    elif kind == "empty":
        copy["headers"][value] = ""
    else:
        copy["headers"][kind] = value
    return copy


def amount(case):
    try:
        if case["op"] == "to_amount":
            return {"ok": amount_util.to_amount(case["text"], case["currency"])}
        if case["op"] == "from_amount":
            return {"ok": amount_util.from_amount(case["text"], case["currency"])}
        amount_util.validate(case["text"], case["currency"])
        return {"ok": case["text"]}
    except Exception as error:
        return {"error": str(error)}


def main():
    cases = json.load(sys.stdin)
    merchant_key = pem(cases["merchant_private_key"])
    antom_private = pem(cases["antom_private_key"])
    antom_public = pem(cases["antom_public_key"])
    client = DefaultAlipayClient("http://127.0.0.1:9", cases["client_id"], merchant_key, antom_public)
    out = {"requests": [], "responses": [], "notifications": [], "amounts": []}
    for case in cases["requests"]:
        out["requests"].append(
            signature_tool.sign(
                case["method"], case["path"], case["client_id"], case["time"], case["body"], merchant_key
            )
        )
    for case in cases["responses"]:
        message = signed(case, antom_private, "response-time")
        copies = [message] + [tampered(message, change) for change in case["tamper"]]
        out["responses"].append(
            {"messages": copies, "verdicts": [response_verdict(client, m) for m in copies]}
        )
    for case in cases["notifications"]:
        message = signed(case, antom_private, "request-time")
        copies = [message] + [tampered(message, change) for change in case["tamper"]]
        out["notifications"].append(
            {"messages": copies, "verdicts": [notification_verdict(antom_public, m) for m in copies]}
        )
    out["amounts"] = [amount(case) for case in cases["amounts"]]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
