"""SigV4 for the merchant API, signed by botocore (AWS's own Python signer), as a merchant's
Python backend would sign: service execute-api, the credentials in endpoints.json."""

import json
import os
from urllib.parse import urlsplit

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def endpoints(state_dir):
    with open(os.path.join(state_dir, "endpoints.json")) as f:
        return json.load(f)


class SigV4(requests.auth.AuthBase):
    """requests' auth hook: signs the prepared request (its final URL, headers and body)."""

    def __init__(self, endpoints):
        self.credentials = Credentials(endpoints["aws_access_key_id"], endpoints["aws_secret_access_key"])
        self.region = endpoints["region"]

    def __call__(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {"host": urlsplit(request.url).netloc}
        if request.headers.get("content-type"):
            headers["content-type"] = request.headers["content-type"]
        signed = AWSRequest(method=request.method, url=request.url, data=body, headers=headers)
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(signed)
        request.headers["Authorization"] = signed.headers["Authorization"]
        request.headers["X-Amz-Date"] = signed.headers["X-Amz-Date"]
        return request


def session(endpoints):
    s = requests.Session()
    s.auth = SigV4(endpoints)
    return s
