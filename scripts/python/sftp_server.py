"""The local stand-in for Antom's SFTP server (isftp.alipay.com): asyncssh on loopback, serving
one folder read-only to one user who logs in with one key (no passwords), under its own host key.

Usage: sftp_server.py --root DIR --keys DIR [--user NAME] [--port N]

--keys DIR holds host_key and client_key (OpenSSH private keys, ed25519); they are generated
there when missing (client_key.pub and host_key.pub beside them). Once listening it prints one
JSON line: {"port", "user", "host_key" (the public key to pin), "client_key_file"}.
"""

import argparse
import asyncio
import json
import os
import sys

import asyncssh


class ReadOnly(asyncssh.SFTPServer):
    """The folder as the root of the session, nothing written, renamed or removed."""

    def __init__(self, chan, root):
        super().__init__(chan, chroot=root)

    def open(self, path, pflags, attrs):
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_APPEND | asyncssh.FXF_TRUNC):
            raise asyncssh.SFTPError(asyncssh.FX_PERMISSION_DENIED, "read only")
        return super().open(path, pflags, attrs)

    def _refuse(self, *_args, **_kwargs):
        raise asyncssh.SFTPError(asyncssh.FX_PERMISSION_DENIED, "read only")

    remove = rename = mkdir = rmdir = setstat = symlink = link = posix_rename = _refuse


class OneUser(asyncssh.SSHServer):
    def __init__(self, user):
        self.user = user

    def begin_auth(self, username):
        if username != self.user:
            raise asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "no such user")
        return True

    def password_auth_supported(self):
        return False


def key(path):
    if not os.path.exists(path):
        private = asyncssh.generate_private_key("ssh-ed25519")
        private.write_private_key(path, format_name="openssh")
        os.chmod(path, 0o600)
        private.write_public_key(path + ".pub")
    return asyncssh.read_private_key(path)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--user", default="antom-reports")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    os.makedirs(args.keys, exist_ok=True)
    host = key(os.path.join(args.keys, "host_key"))
    client = key(os.path.join(args.keys, "client_key"))
    root = os.path.realpath(args.root)
    server = await asyncssh.listen(
        "127.0.0.1",
        args.port,
        server_factory=lambda: OneUser(args.user),
        server_host_keys=[host],
        authorized_client_keys=asyncssh.import_authorized_keys(
            client.export_public_key().decode()
        ),
        sftp_factory=lambda chan: ReadOnly(chan, root),
        allow_scp=False,
    )
    port = server.sockets[0].getsockname()[1]
    print(
        json.dumps(
            {
                "port": port,
                "user": args.user,
                "host_key": host.export_public_key().decode().strip(),
                "client_key_file": os.path.join(os.path.realpath(args.keys), "client_key"),
            }
        ),
        flush=True,
    )
    await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
