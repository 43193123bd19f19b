"""moto in server mode, with each request handled under one lock.

moto's own server is threaded and its DynamoDB backend has no lock, so two concurrent
UpdateItem/TransactWriteItems calls on one item can lose an update (read-modify-write in Python).
Real DynamoDB applies each write and each transaction atomically. Serializing requests restores
that guarantee, which the gateway's race tests depend on; connections are still accepted
concurrently.

Also: moto makes every TransactWriteItems deep-copy the tables it touches (to roll back on
failure), and a table's copy includes its DynamoDB stream's records, so with a stream enabled each
transaction got slower with every write ever made (the chaos run took 2x, the store bench timed
out). Stream records are never changed once written, so the copy shares them and copies only the
list: a rollback still drops the records of a cancelled transaction. And moto deep-copies the
table once per item of a transaction, not once per table (the copies of one table are the same
pre-transaction state; only the last one is kept), so a 4-item transaction on a table of 1,500
items took over 2 s; here a transaction copies each table once.

Usage: python moto_serialized.py HOST PORT
"""

import copy

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


def share_stream_records():
    from moto.dynamodb.models.table import StreamShard

    def deepcopy_shard(self, memo):
        clone = StreamShard.__new__(StreamShard)
        memo[id(self)] = clone
        clone.__dict__.update(self.__dict__)
        clone.items = list(self.items)
        clone.table = copy.deepcopy(self.table, memo)
        return clone

    StreamShard.__deepcopy__ = deepcopy_shard


class CopyEachTableOnce:
    """Stands in for the `copy` module inside moto's DynamoDB backend while a transaction takes
    its backups: the first deep copy of a table is reused for the transaction's other items."""

    def __init__(self):
        self.backups = None

    def deepcopy(self, value, memo=None):
        from moto.dynamodb.models.table import Table

        if self.backups is None or memo is not None or not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        key = id(value)
        if key not in self.backups:
            self.backups[key] = copy.deepcopy(value)
        return self.backups[key]

    def __getattr__(self, name):
        return getattr(copy, name)


def copy_each_table_once():
    import moto.dynamodb.models as dynamodb

    shim = CopyEachTableOnce()
    dynamodb.copy = shim
    original = dynamodb.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        shim.backups = {}
        try:
            return original(self, transact_items)
        finally:
            shim.backups = None

    dynamodb.DynamoDBBackend.transact_write_items = transact_write_items


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    share_stream_records()
    copy_each_table_once()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
