#!/usr/bin/env python3
"""A real SMTP server for phasegate's tests (aiosmtpd), keeping every message it accepts.

    python3 scripts/smtp-sink.py DIR [--host 127.0.0.1] [--user USER --password PASSWORD]
                                     [--reject-rcpt ADDRESS] [--tls-cert PEM --tls-key PEM [--implicit-tls]]
                                     [--pipelining]

It listens on HOST at a port of its choosing and prints `port N` on its first line once it is
ready. Each message it accepts is written to DIR/NNNN.json (written whole, then renamed, so a
reader never sees half a file): the envelope (`mail_from`, `rcpt_tos`), the raw `data`, the
`headers` as the message has them, and its `parts` (content type and decoded text of each leaf).
With --user and --password it offers AUTH (PLAIN, LOGIN) and refuses mail from a client that has
not authenticated; --reject-rcpt answers 550 to that recipient. Without --tls-cert it offers no
STARTTLS and takes AUTH in plain text; with it, it offers STARTTLS and requires it before
anything else (AUTH included), or with --implicit-tls speaks TLS from the first byte. With
--pipelining its EHLO answer offers PIPELINING (RFC 2920; aiosmtpd reads commands in order from
what arrived, so a client may send several before reading their answers). It stops
when its standard input closes (the test that started it has gone) or on SIGTERM.

Needs the PyPI package `aiosmtpd` (`python3 -m pip install aiosmtpd`).
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import os
import ssl
import sys
import warnings

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.exit("the PyPI package `aiosmtpd` is missing: python3 -m pip install aiosmtpd")


class Sink:
    def __init__(self, directory, reject_rcpt, pipelining):
        self.directory = directory
        self.reject_rcpt = reject_rcpt
        self.pipelining = pipelining
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # With this hook aiosmtpd leaves the session's name to it.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.reject_rcpt:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = []
        for part in message.walk():
            if part.is_multipart():
                continue
            parts.append({"content_type": part.get_content_type(), "text": part.get_content()})
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "headers": [[name, str(value)] for name, value in message.items()],
            "content_type": message.get_content_type(),
            "parts": parts,
        }
        self.count += 1
        path = os.path.join(self.directory, f"{self.count:04}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 kept"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # `handled=False`: aiosmtpd answers (235 or 535) itself.
        return AuthResult(success=ok, handled=False)

    return check


async def main():
    # AUTH over plain text is what the tests want (on loopback); say nothing about it.
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--reject-rcpt")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--pipelining", action="store_true")
    args = parser.parse_args()
    sink = Sink(args.directory, args.reject_rcpt, args.pipelining)
    options = {}
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if not args.implicit_tls:
            options.update({"tls_context": context, "require_starttls": True})
    if args.user is not None:
        options.update({
            "authenticator": authenticator(args.user, args.password or ""),
            "auth_required": True,
            # With implicit TLS aiosmtpd does not see the connection as encrypted: it is.
            "auth_require_tls": args.tls_cert is not None and not args.implicit_tls,
        })
    loop = asyncio.get_running_loop()
    implicit = context if args.implicit_tls else None
    server = await loop.create_server(lambda: SMTP(sink, hostname="sink.test", **options), args.host, 0, ssl=implicit)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    # Stop when the test that started this is gone: its end of standard input closes.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
