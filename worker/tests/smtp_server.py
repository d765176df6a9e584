"""A real SMTP server for Herald's worker tests (aiosmtpd, Debian's python3-aiosmtpd).

Saves every accepted message as OUT/<n>.eml. --tempfail N answers the first N recipients with
451 (try again later); --reject answers every recipient with 550 (no such user). Prints "ready"
once it listens, then serves until killed.
"""

import argparse
import os
import signal
import threading

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out, tempfail, reject):
        self.out = out
        self.tempfail = tempfail
        self.reject = reject
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject:
            return "550 5.1.1 No such user here"
        with self.lock:
            if self.tempfail > 0:
                self.tempfail -= 1
                return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        path = os.path.join(self.out, f"{n:05d}.eml")
        with open(path + ".part", "wb") as f:
            f.write(envelope.original_content)
        os.rename(path + ".part", path)
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tempfail", type=int, default=0)
    p.add_argument("--reject", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    controller = Controller(Handler(a.out, a.tempfail, a.reject), hostname="127.0.0.1", port=a.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
