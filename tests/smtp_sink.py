#!/usr/bin/python3
"""A real SMTP server for intake's tests: aiosmtpd on 127.0.0.1, answering DATA as scripted.

    smtp_sink.py --port 2525 --out DIR [--script 451,250,550]
                 [--tls implicit|starttls --cert server.pem --key server.key]

Each DATA is answered with the next code of the script (250 once the script is used up).
Accepted mail is written to DIR/NNNN.eml with its envelope recipients in DIR/NNNN.rcpt; every answer,
accepted or not, is appended to DIR/attempts.log as "CODE RCPT...". Prints "ready" on stdout
once listening; stops on SIGTERM or SIGINT.
"""

import argparse
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

REPLIES = {
    250: "250 2.0.0 OK: queued",
    421: "421 4.3.2 Service shutting down",
    451: "451 4.3.0 Temporary failure, try again later",
    452: "452 4.3.1 Insufficient system storage",
    550: "550 5.1.1 Mailbox unavailable",
    554: "554 5.7.1 Rejected",
}


class Sink:
    def __init__(self, out, script):
        self.out = out
        self.script = list(script)
        self.accepted = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            code = self.script.pop(0) if self.script else 250
            with open(os.path.join(self.out, "attempts.log"), "a") as log:
                log.write(f"{code} {' '.join(envelope.rcpt_tos)}\n")
            if code != 250:
                return REPLIES.get(code, f"{code} scripted failure")
            self.accepted += 1
            stem = os.path.join(self.out, f"{self.accepted:04d}")
            with open(stem + ".rcpt.tmp", "w") as file:
                file.write("".join(rcpt + "\n" for rcpt in envelope.rcpt_tos))
            with open(stem + ".eml.tmp", "wb") as file:
                file.write(envelope.original_content or envelope.content)
            # The recipients first: a reader that sees the .eml also finds its envelope.
            os.rename(stem + ".rcpt.tmp", stem + ".rcpt")
            os.rename(stem + ".eml.tmp", stem + ".eml")
            return REPLIES[250]


class LoopbackController(Controller):
    def __init__(self, handler, starttls_context=None, **kwargs):
        self.starttls_context = starttls_context
        super().__init__(handler, **kwargs)

    def factory(self):
        return SMTP(
            self.handler,
            hostname="sink.test",
            decode_data=False,
            tls_context=self.starttls_context,
            require_starttls=self.starttls_context is not None,
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--script", default="")
    parser.add_argument("--tls", choices=["none", "implicit", "starttls"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    script = [int(code) for code in args.script.split(",") if code.strip()]
    os.makedirs(args.out, exist_ok=True)

    controller = LoopbackController(
        Sink(args.out, script),
        starttls_context=context if args.tls == "starttls" else None,
        hostname="127.0.0.1",
        port=args.port,
        ssl_context=context if args.tls == "implicit" else None,
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
