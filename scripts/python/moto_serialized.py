"""moto in server mode, with each request handled under one lock.

moto's own server is threaded and its DynamoDB backend has no lock, so two concurrent
UpdateItem/TransactWriteItems calls on one item can lose an update (read-modify-write in Python).
Real DynamoDB applies each write and each transaction atomically. Serializing requests restores
that guarantee, which the gateway's race tests depend on; connections are still accepted
concurrently.

Usage: python moto_serialized.py HOST PORT
"""

import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class Serialized:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Materialise the body inside the lock: the work happens while iterating.
            return [b"".join(self.app(environ, start_response))]


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
