"""
test_auth_backend — password checks that take their time.  Cyrus SASL calls
block (saslauthd has no timeout of its own), so relayd makes them on a worker
thread: a hung saslauthd must neither stall other sessions nor hold a client
for longer than auth_timeout, and must not keep relayd from stopping.
"""
import base64
import os
import time

from harness import Client, running, run, test, wait_for
from fake_saslauthd import FakeSaslauthd


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def authd_relayd(timeout="2s"):
    """relayd whose passwords are checked by a stand-in saslauthd in DIR/authd."""
    r = running(extra="auth_require_tls no\nauth_timeout %s\n" % timeout, allow="10.0.0.0/8")
    authd = os.path.join(r.r.dir, "authd")
    os.mkdir(authd)
    with open(r.r.conf, "a") as f:
        f.write("auth_saslauthd %s\n" % authd)
    fake = FakeSaslauthd(authd, {"bob": "right"})
    return r, fake


@test
def test_saslauthd_login_through_the_worker():
    r, fake = authd_relayd()
    try:
        with r as d:
            c = Client(d.port)
            c.hello()
            c.cmd("AUTH PLAIN " + plain("bob", "wrong"), 535, "5.7.8")
            c.cmd("AUTH PLAIN " + plain("bob", "right"), 235)
            c.cmd("MAIL FROM:<a@relay.test>", 250)
            c.cmd("RCPT TO:<x@example.com>", 250)
            c.cmd("QUIT", 221)
            assert any(a[0].startswith("bob") and a[1] == "smtp" for a in fake.asked), fake.asked
            assert "sasl_username=bob" in d.log_text()
    finally:
        fake.stop()


@test
def test_hung_saslauthd_gets_454_and_stalls_nobody_else():
    r, fake = authd_relayd()
    try:
        with r as d:
            hung = Client(d.port)
            hung.hello()
            t0 = time.monotonic()
            hung.send("AUTH PLAIN " + plain("hang", "x") + "\r\n")
            wait_for(lambda: fake.held, 5, what="saslauthd to be asked")
            # The event loop goes on: another client is served at once.
            other = Client(d.port)
            t1 = time.monotonic()
            other.hello()
            other.cmd("NOOP", 250)
            assert time.monotonic() - t1 < 1.5, "a hung login stalled another session"
            # The hung client hears 454 after auth_timeout (2s), never 535.
            hung.expect(454, "4.7.0")
            waited = time.monotonic() - t0
            assert 1.5 < waited < 6, waited
            hung.cmd("NOOP", 250)
            assert "did not answer within 2s" in d.log_text()
            # Its session stays usable, and the worker is not wedged for good:
            # once saslauthd lets go, the next login is checked.
            fake.stop()
            os.unlink(os.path.join(d.dir, "authd", "mux"))
            fake = FakeSaslauthd(os.path.join(d.dir, "authd"), {"bob": "right"})
            hung.cmd("AUTH PLAIN " + plain("bob", "right"), 235)
            hung.cmd("QUIT", 221)
            other.cmd("QUIT", 221)
    finally:
        fake.stop()


@test
def test_client_gone_while_saslauthd_hangs():
    r, fake = authd_relayd()
    try:
        with r as d:
            for _ in range(3):
                c = Client(d.port)
                c.hello()
                c.send("AUTH PLAIN " + plain("hang", "x") + "\r\n")
                c.close()
            wait_for(lambda: len(fake.held) >= 1, 5, what="saslauthd to be asked")
            c = Client(d.port)
            c.hello()
            c.cmd("QUIT", 221)
            fake.stop()     # the held check fails; its session is long gone
            wait_for(lambda: d.log_text().count("disconnect from") >= 4, 10,
                     what="every session to end")
    finally:
        fake.stop()


@test
def test_sigterm_while_saslauthd_hangs():
    r, fake = authd_relayd("1m")
    try:
        d = r.r.start()
        try:
            c = Client(d.port)
            c.hello()
            c.send("AUTH PLAIN " + plain("hang", "x") + "\r\n")
            wait_for(lambda: fake.held, 5, what="saslauthd to be asked")
            t0 = time.monotonic()
            assert d.stop(timeout=20) == 0      # one SIGTERM: a second one would drop
            assert time.monotonic() - t0 < 15
            c.expect(421)
            assert "still busy" in d.log_text()
        finally:
            d.cleanup()
    finally:
        fake.stop()


if __name__ == "__main__":
    run()
