"""python-alipay-sdk as an oracle for tests/it/differential.rs.

Reads the cases (JSON) on stdin and writes, on stdout, what python-alipay-sdk makes of them:
  - requests: the signature of each request's parameters (its `sign_data`);
  - notifications: as Alipay would send it, the form body signed with the Alipay key (its
    `sign_data` over the fields but `sign_type`), and a tampered copy under the same signature;
    its `verify` verdict on both;
  - responses: the body laid out as Alipay's gateway does (`{"<method>_response":...,"sign":...}`,
    signed with its `_sign` over the content's exact text), a tampered copy, and its
    `_verify_and_return_sync_response` verdict on both.

python-alipay-sdk keeps empty values in what it signs; the Java SDK (and Alipay) leave them out.
Empty values are dropped before they reach it, so it signs and verifies by Alipay's rule.
"""

import json
import sys
from urllib.parse import parse_qsl, urlencode

from alipay import AliPay


def pem(text):
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def sdk(private_key, public_key, app_id):
    return AliPay(
        appid=app_id,
        app_notify_url=None,
        app_private_key_string=pem(private_key),
        alipay_public_key_string=pem(public_key),
        sign_type="RSA2",
    )


def non_empty(pairs):
    return {k: v for k, v in pairs.items() if v != ""}


def sign_of(signed_string):
    return dict(parse_qsl(signed_string, keep_blank_values=True))["sign"]


def notification_verdict(verifier, body):
    fields = dict(parse_qsl(body, keep_blank_values=True, strict_parsing=True))
    signature = fields.pop("sign")
    try:
        return bool(verifier.verify(non_empty(fields), signature))
    except Exception:  # an unknown sign_type, a malformed signature
        return False


def response_verdict(verifier, body, response_key):
    try:
        verifier._verify_and_return_sync_response(body, response_key)
        return True
    except Exception:
        return False


def main():
    cases = json.load(sys.stdin)
    app_id = cases["app_id"]
    # The merchant's side (requests) and Alipay's side (notifications, responses).
    merchant = sdk(cases["app_private_key"], cases["alipay_public_key"], app_id)
    alipay = sdk(cases["alipay_private_key"], cases["alipay_public_key"], app_id)

    requests = [{"sign": sign_of(merchant.sign_data(non_empty(case["params"])))}
                for case in cases["requests"]]

    notifications = []
    for case in cases["notifications"]:
        fields = case["fields"]
        content = non_empty({k: v for k, v in fields.items() if k != "sign_type"})
        signature = sign_of(alipay.sign_data(content))
        body = urlencode(list(fields.items()) + [("sign", signature)])
        key, value = case["tamper"]
        tampered = dict(fields, **{key: value})
        tampered_body = urlencode(list(tampered.items()) + [("sign", signature)])
        notifications.append({
            "body": body,
            "tampered_body": tampered_body,
            "verdict": notification_verdict(merchant, body),
            "tampered_verdict": notification_verdict(merchant, tampered_body),
        })

    responses = []
    for case in cases["responses"]:
        key = case["method"].replace(".", "_") + "_response"
        signature = alipay._sign(case["content"])
        body = '{"%s":%s,"sign":"%s"}' % (key, case["content"], signature)
        tampered_body = '{"%s":%s,"sign":"%s"}' % (key, case["tampered"], signature)
        responses.append({
            "body": body,
            "tampered_body": tampered_body,
            "verdict": response_verdict(merchant, body, key),
            "tampered_verdict": response_verdict(merchant, tampered_body, key),
        })

    agreements = [agreement_request(merchant, case) for case in cases.get("agreements", [])]

    json.dump({"requests": requests, "notifications": notifications, "responses": responses,
               "agreements": agreements},
              sys.stdout, ensure_ascii=False)


def sorted_tree(value):
    """Keys in sorted order at every level: the layout the gateway sends (JSON's key order is
    free; the signature is over the exact text)."""
    if isinstance(value, dict):
        return {k: sorted_tree(value[k]) for k in sorted(value)}
    return value


def agreement_request(merchant, case):
    """An agreement API built from its documented fields (docs/alipay/operations.md §4) and signed
    as python-alipay-sdk's generic client_api (the page sign) or server_api (the rest) signs it:
    build_body + sign_data; server_api would then POST that body."""
    f = case["fields"]
    method = case["method"]
    if method == "alipay.user.agreement.page.sign":
        rule = {
            "period_type": f["period_type"],
            "period": int(f["period"]),
            "execute_time": f["execute_time"],
            "single_amount": f["single_amount"],
        }
        if f.get("total_amount"):
            rule["total_amount"] = f["total_amount"]
        if f.get("total_payments"):
            rule["total_payments"] = int(f["total_payments"])
        biz = {
            "personal_product_code": "CYCLE_PAY_AUTH_P",
            "product_code": f["product_code"],
            "sign_scene": f["sign_scene"],
            "external_agreement_no": f["external_agreement_no"],
            "access_params": {"channel": f["channel"]},
            "period_rule_params": rule,
        }
    elif method == "alipay.trade.page.pay":
        # Pay-and-sign: the cashier payment with the agreement to sign.
        sign = dict(f["sign"])
        rule = {
            "period_type": sign["period_type"],
            "period": int(sign["period"]),
            "execute_time": sign["execute_time"],
            "single_amount": sign["single_amount"],
        }
        biz = {
            "out_trade_no": f["out_trade_no"],
            "total_amount": f["total_amount"],
            "subject": f["subject"],
            "product_code": "FAST_INSTANT_TRADE_PAY",
            "agreement_sign_params": {
                "personal_product_code": "CYCLE_PAY_AUTH_P",
                "sign_scene": sign["sign_scene"],
                "external_agreement_no": sign["external_agreement_no"],
                "access_params": {"channel": sign["channel"]},
                "period_rule_params": rule,
                "sign_notify_url": sign["sign_notify_url"],
            },
        }
    elif method == "alipay.trade.pay":
        biz = {
            "out_trade_no": f["out_trade_no"],
            "total_amount": f["total_amount"],
            "subject": f["subject"],
            "product_code": f["product_code"],
            "agreement_params": {"agreement_no": f["agreement_no"]},
        }
        if f.get("settle_currency"):
            biz["trans_currency"] = "CNY"
            biz["settle_currency"] = f["settle_currency"]
    elif method == "alipay.user.agreement.executionplan.modify":
        biz = {"agreement_no": f["agreement_no"], "deduct_time": f["deduct_time"],
               "memo": f["memo"]}
    else:  # query, unsign
        biz = {"agreement_no": f["agreement_no"]}
    kwargs = {"timestamp": case["timestamp"], "format": "JSON"}
    for key in ("notify_url", "return_url"):
        if case.get(key):
            kwargs[key] = case[key]
    if method in ("alipay.user.agreement.page.sign", "alipay.trade.page.pay"):
        signed = merchant.client_api(method, sorted_tree(biz), **kwargs)
    else:
        signed = merchant.sign_data(merchant.build_body(method, sorted_tree(biz), **kwargs))
    return {"params": dict(parse_qsl(signed, keep_blank_values=True, strict_parsing=True))}


if __name__ == "__main__":
    main()
