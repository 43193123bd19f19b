"""The notify function's job written the common Python way, for `make bench` to measure next to
ours: python-alipay-sdk verifies Alipay's RSA2 signature, boto3 reads the order and marks it
paid with a conditional write. Run under awslambdaric (Lambda's Python runtime interface client).
Not part of the gateway.
"""

import base64
import os
import urllib.parse
from decimal import Decimal

import boto3
from alipay import AliPay

TABLE = os.environ["ORDERS_TABLE"]
APP_ID = os.environ["ALIPAY_APP_ID"]
SELLER_ID = os.environ["ALIPAY_SELLER_ID"]

dynamodb = boto3.client("dynamodb")


def pem(text):
    """The PEM block alone (the test keys carry a comment line before it)."""
    return text[text.index("-----BEGIN"):]


alipay = AliPay(
    appid=APP_ID,
    app_notify_url=None,
    # The SDK wants an application key even to verify; never used to sign here.
    app_private_key_string=pem(open(os.environ["APP_PRIVATE_KEY_FILE"]).read()),
    alipay_public_key_string=pem(os.environ["ALIPAY_PUBLIC_KEY"]),
    sign_type="RSA2",
)


def answer(status, text):
    return {"statusCode": status, "headers": {"content-type": "text/plain"}, "body": text}


def handler(event, context):
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    data = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    signature = data.pop("sign", None)
    if not signature or not alipay.verify(data, signature):
        return answer(400, "fail")
    if data.get("app_id") != APP_ID or data.get("seller_id") != SELLER_ID:
        return answer(400, "fail")
    key = {"pk": {"S": "ORDER#" + data.get("out_trade_no", "")}, "sk": {"S": "ORDER"}}
    item = dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")
    if item is None:
        return answer(400, "fail")
    fen = int(Decimal(data.get("total_amount", "0")) * 100)
    if item["amount_fen"]["N"] != str(fen):
        return answer(400, "fail")
    if data.get("trade_status") in ("TRADE_SUCCESS", "TRADE_FINISHED") and item["status"]["S"] == "CREATED":
        try:
            dynamodb.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET #s = :paid, trade_no = :trade_no, paid_fen = :fen, version = version + :one",
                ConditionExpression="#s = :created",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":paid": {"S": "PAID"},
                    ":created": {"S": "CREATED"},
                    ":trade_no": {"S": data.get("trade_no", "")},
                    ":fen": {"N": str(fen)},
                    ":one": {"N": "1"},
                },
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            pass
    return answer(200, "success")
