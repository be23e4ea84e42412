"""
test_auth — SMTP AUTH (RFC 4954) through Cyrus SASL over TLS, as mail servers
and swaks use it, and every way it can go wrong: before TLS, bad passwords,
unknown users and mechanisms, broken base64, "*", a 13 KB line, a second
AUTH, brute force, a backend that is down.  Relaying needs a login or an
allow network.
"""
import base64
import os
import re
import subprocess
import time

from harness import Client, auth_running, run, sasldb, starttls, test, tls_conf

PASSWORD = "s3cret pass"


def auth_relayd(extra="", allow="10.0.0.0/8"):
    return auth_running(extra, allow, PASSWORD)


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def tls_client(r):
    c = Client(r.port)
    c.hello()
    starttls(c)
    return c


@test
def test_auth_not_offered_before_tls_and_refused_with_538():
    with auth_relayd() as r:
        c = Client(r.port)
        text = c.hello()
        assert "AUTH" not in text, text
        c.cmd("AUTH PLAIN " + plain("bob", PASSWORD), 538, "5.7.11")
        starttls(c)
        assert "AUTH PLAIN LOGIN" in c.cmd("EHLO client.test", 250).split("\n")
        c.cmd("QUIT", 221)


@test
def test_stranger_gets_530_and_login_lets_relay():
    with auth_relayd() as r:
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 530, "5.7.0")
        c.cmd("RSET", 250)
        c.cmd("AUTH PLAIN " + plain("bob", PASSWORD), 235, "2.7.0")
        qid = c.send_message("a@example.com", ["b@example.org"], "Subject: x\r\n\r\nhi\r\n")
        c.cmd("QUIT", 221)
        log = r.log_text()
        assert "login: method=PLAIN, sasl_username=bob" in log, log
        assert re.search(qid + r": client=\[127\.0\.0\.1\]:\d+, sasl_username=bob", log), log
        _, body = r.body(qid)
        assert b"with ESMTPSA id " + qid.encode() in body
        rc, out, _ = r.relayctl("show", qid)
        assert "sasl_username: bob" in out, out


@test
def test_swaks_plain_and_login_with_realm():
    with auth_relayd() as r:
        for mech, user in (("PLAIN", "bob"), ("LOGIN", "bob@relay.test"), ("LOGIN", "bob")):
            out = subprocess.run(["swaks", "-s", "127.0.0.1:%d" % r.port, "--tls", "-a", mech,
                                  "-au", user, "-ap", PASSWORD, "-f", "a@example.com",
                                  "-t", "b@example.org"], capture_output=True, timeout=60)
            text = out.stdout.decode()
            assert out.returncode == 0, (mech, user, text)
            assert "235 2.7.0" in text
        assert len(r.queued_ids()) == 3


@test
def test_plain_without_initial_response():
    with auth_relayd() as r:
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        c.cmd("AUTH PLAIN", 334)
        c.cmd(plain("bob", PASSWORD), 235)
        c.cmd("QUIT", 221)


@test
def test_login_exchange():
    with auth_relayd() as r:
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        # Cyrus 2.1.28's LOGIN sends empty prompts; clients answer by position anyway.
        c.cmd("AUTH LOGIN", 334)
        c.cmd(b64("bob"), 334)
        c.cmd(b64(PASSWORD), 235)
        c.cmd("QUIT", 221)


@test
def test_wrong_password_and_unknown_user_look_the_same_and_are_slow():
    with auth_relayd() as r:
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        t0 = time.monotonic()
        wrong = c.cmd("AUTH PLAIN " + plain("bob", "guess"), 535, "5.7.8")
        assert time.monotonic() - t0 >= 0.1
        unknown = c.cmd("AUTH PLAIN " + plain("nobody", "guess"), 535, "5.7.8")
        assert wrong == unknown
        log = r.log_text()
        assert "authentication failed from [127.0.0.1]" in log and "mechanism=PLAIN" in log
        assert "guess" not in log


@test
def test_negative_cases_get_the_rfc_replies():
    with auth_relayd() as r:
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        c.cmd("AUTH", 501, "5.5.4")
        c.cmd("AUTH FROBNICATE", 504, "5.5.4")
        c.cmd("AUTH PLAIN", 334)
        c.cmd("*", 501, "5.0.0")
        c.cmd("AUTH PLAIN %%%not-base64%%%", 501, "5.5.2")
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("AUTH PLAIN " + plain("bob", PASSWORD), 503, "transaction in progress")
        c.cmd("STARTTLS", 503, "transaction in progress")
        c.cmd("RSET", 250)
        c.cmd("AUTH PLAIN " + "A" * 13000, 500, "5.5.2")              # over RFC 4954's 12288
        c.cmd("AUTH LOGIN", 334)
        c.cmd("A" * 13000, 500, "5.5.6")                              # an exchange line, too
        c.cmd("AUTH LOGIN " + b64("bob"), 334)                        # the session goes on
        c.cmd("*", 501, "5.0.0")
        c.cmd("AUTH PLAIN " + plain("bob", PASSWORD), 235)
        c.cmd("AUTH PLAIN " + plain("bob", PASSWORD), 503, "5.5.1")   # already logged in
        c.cmd("QUIT", 221)


@test
def test_too_many_failures_end_the_session_and_repeat_offenders_wait_longer():
    with auth_relayd(extra="auth_max_failures 2\n") as r:
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        c.cmd("AUTH PLAIN " + plain("bob", "one"), 535)
        c.send("AUTH PLAIN " + plain("bob", "two") + "\r\n")
        c.expect(535)
        c.expect(421, "4.7.0")
        assert c.closed()
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        t0 = time.monotonic()
        c.cmd("AUTH PLAIN " + plain("bob", "three"), 535)
        assert time.monotonic() - t0 >= 2.0          # two earlier failures: +2 s
        c.cmd("QUIT", 221)


@test
def test_allow_network_still_relays_without_login():
    with auth_relayd(allow="127.0.0.0/8") as r:
        c = Client(r.port)
        c.hello()
        assert c.send_message("a@example.com", ["b@example.org"], "Subject: x\r\n\r\nhi\r\n")
        c.cmd("QUIT", 221)


@test
def test_auth_without_tls_when_allowed_by_config():
    with auth_relayd(extra="auth_require_tls no\n") as r:
        c = Client(r.port)
        assert "AUTH PLAIN LOGIN" in c.hello().split("\n")
        c.cmd("AUTH PLAIN " + plain("bob", PASSWORD), 235)
        c.cmd("QUIT", 221)


@test
def test_backend_failure_is_454_not_535():
    with auth_relayd() as r:
        os.rename(os.path.join(r.dir, "sasldb2"), os.path.join(r.dir, "sasldb2.gone"))
        c = tls_client(r)
        c.cmd("EHLO client.test", 250)
        c.cmd("AUTH PLAIN " + plain("bob", PASSWORD), 454, "4.7.0")
        c.cmd("QUIT", 221)


@test
def test_config_check_for_sasldb():
    import subprocess as sp
    from harness import RELAYD, Relayd
    r = Relayd(extra=tls_conf())
    try:
        with open(r.conf, "a") as f:
            f.write("auth_sasldb %s/missing\n" % r.dir)
        n = open(r.conf).read().count("\n")
        out = sp.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 1
        assert ("%s:%d: auth_sasldb %s/missing" % (r.conf, n, r.dir)) in out.stderr.decode(), out
        path = sasldb(r.dir)
        os.chmod(path, 0o644)
        with open(r.conf, "a") as f:
            pass
        text = open(r.conf).read().replace("%s/missing" % r.dir, path)
        with open(r.conf, "w") as f:
            f.write(text)
        out = sp.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 1 and b"readable by everyone" in out.stderr, out
        os.chmod(path, 0o640)
        out = sp.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 0, out
    finally:
        r.cleanup()


if __name__ == "__main__":
    run()
