"""
test_rate_limits — how much a login or an address may send, against the real
relayd: limit_user and limit_client answer MAIL FROM over the limit with 450
4.7.1 … rate limit exceeded, try again later (one log line naming the login or
address and the limit), and the mail is taken again once the sliding window has
passed; limit_rcpt answers the RCPT TO over it and the message goes on with
the recipients taken; a transaction given up costs nothing; one connection
over max_connections_per_client is answered 421 and closed (after TLS on a TLS
port); limit_exempt spares an address; a SIGHUP changes a limit and keeps the
counts; relayd -n checks the syntax.
"""
import base64
import re
import signal
import socket
import subprocess
import time

from harness import (RELAYD, Client, Relayd, auth_running, client_tls_context, free_port, run,
                     running, sasldb, starttls, test, tls_conf, wait_for)

PASSWORD = "s3cret pass"
BODY = "Subject: rate\r\n\r\nhello\r\n"


def login(r, user):
    """A raw client over STARTTLS, logged in as user."""
    c = Client(r.port)
    c.hello()
    starttls(c)
    c.cmd("EHLO client.test", 250)
    c.cmd("AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode()).decode(),
          235)
    return c


def plain(r):
    c = Client(r.port)
    c.hello()
    return c


def rejects(r, what="MAIL"):
    return [l for l in r.log_text().splitlines() if "reject: %s from" % what in l]


def reload(r, text, what="the reload"):
    with open(r.conf, "a") as f:
        f.write(text)
    n = r.log_text().count("reload: ")
    r.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: r.log_text().count("reload: ") > n, 10, what=what)
    line = [l for l in r.log_text().splitlines() if "reload: " in l][-1]
    assert "keeping" not in line, line
    return line


def rewrite(r, old, new):
    with open(r.conf) as f:
        text = f.read()
    assert old in text, (old, text)
    with open(r.conf, "w") as f:
        f.write(text.replace(old, new))


@test
def test_limit_user_450_then_accepted_after_the_window():
    with auth_running("limit_user 2/minute\n", password=PASSWORD) as r:
        sasldb(r.dir, (("carol", PASSWORD),))
        c = login(r, "bob")
        first = time.monotonic()
        assert c.send_message("bob@example.com", ["a@example.org"], BODY)
        time.sleep(2)                                   # so the two leave the window apart
        assert c.send_message("bob@example.com", ["b@example.org"], BODY)
        c.cmd("MAIL FROM:<bob@example.com>", 450,
              "4.7.1 Message rate limit exceeded for this login (limit_user 2/minute), "
              "try again later")
        c.cmd("RCPT TO:<c@example.org>", 503)           # no transaction: nothing taken
        c.cmd("QUIT", 221)
        lines = rejects(r)
        assert len(lines) == 1, lines
        assert re.search(r"reject: MAIL from \[127\.0\.0\.1\]:\d+: 450 4\.7\.1 Message rate "
                         r"limit exceeded for this login; from=<bob@example\.com>, "
                         r"sasl_username=bob@relay\.test, limit=limit_user 2/minute, "
                         r"user=bob, sent=2, pending=0, room_in=\d+s$", lines[0]), lines
        # Another login has its own allowance; bob under his other name has not.
        c = login(r, "carol")
        assert c.send_message("carol@example.com", ["a@example.org"], BODY)
        c.cmd("QUIT", 221)
        c = login(r, "bob@relay.test")
        c.cmd("MAIL FROM:<bob@example.com>", 450, "limit_user 2/minute")
        assert len(r.queued_ids()) == 3
        # The window slides: a minute (and at most a second) after the first, one fits.
        time.sleep(max(0, first + 58 - time.monotonic()))
        c.cmd("MAIL FROM:<bob@example.com>", 450, "limit_user 2/minute")
        def taken():
            c.send("MAIL FROM:<bob@example.com>\r\n")
            code, _ = c.reply()
            return code == 250
        wait_for(taken, 10, step=0.5, what="room in the window")
        assert time.monotonic() - first >= 59.9
        c.cmd("RCPT TO:<late@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(BODY + ".\r\n")
        c.expect(250, "queued as")
        c.cmd("MAIL FROM:<bob@example.com>", 450, "limit_user 2/minute")   # the second still counts
        c.cmd("QUIT", 221)
        assert len(r.queued_ids()) == 4


@test
def test_limit_client_counts_the_address_and_an_abandoned_message_costs_nothing():
    with running(extra="limit_client 2/hour\nmax_errors 5\n") as r:
        c = plain(r)
        c.cmd("MAIL FROM:<me@example.com>", 250)
        c.cmd("RCPT TO:<a@example.org>", 250)
        c.cmd("RSET", 250)                              # given up: costs nothing
        c.cmd("MAIL FROM:<me@example.com>", 250)
        c.cmd("RCPT TO:<a@example.org>", 250)
        c.cmd("DATA", 354)
        c.send("Subject: x\r\n\r\n" + "y" * 900 + "\r\n.\r\n")
        c.expect(250)
        c.cmd("QUIT", 221)
        # A message refused at DATA costs nothing either.
        r2 = Client(r.port)
        r2.hello()
        r2.cmd("MAIL FROM:<me@example.com>", 250)
        r2.cmd("RCPT TO:<a@example.org>", 250)
        r2.cmd("DATA", 354)
        r2.send("Subject: long\r\n\r\n" + "z" * 1200 + "\r\n.\r\n")
        r2.expect(550, "longer than 1000")
        assert r2.send_message("me@example.com", ["b@example.org"], BODY)
        r2.cmd("MAIL FROM:<me@example.com>", 450,
               "4.7.1 Message rate limit exceeded for your address (limit_client 2/hour), "
               "try again later")
        # A client that keeps trying in one session is cut off at max_errors.
        for _ in range(3):
            r2.cmd("MAIL FROM:<me@example.com>", 450)
        r2.send("MAIL FROM:<me@example.com>\r\n")
        r2.expect(450)
        r2.expect(421, "too many errors")
        assert r2.closed()
        lines = rejects(r)
        assert len(lines) == 5, lines
        assert re.search(r": 450 4\.7\.1 Message rate limit exceeded for your address; "
                         r"from=<me@example\.com>, limit=limit_client 2/hour, "
                         r"address=127\.0\.0\.1, sent=2, pending=0, room_in=\d+s$",
                         lines[0]), lines
        assert len(r.queued_ids()) == 2


@test
def test_limit_rcpt_refuses_the_recipients_over_it_and_the_message_goes_on():
    with running(extra="limit_rcpt 3/hour\nmax_errors 3\n") as r:
        c = plain(r)
        assert c.send_message("me@example.com", ["a@example.org", "b@example.org"], BODY)
        c.cmd("MAIL FROM:<me@example.com>", 250)
        c.cmd("RCPT TO:<c@example.org>", 250)
        for rcpt in ("d", "e", "f", "g", "h"):          # more than max_errors: not errors
            c.cmd("RCPT TO:<%s@example.org>" % rcpt, 450,
                  "4.7.1 Recipient rate limit exceeded for your address (limit_rcpt 3/hour), "
                  "try again later")
        c.cmd("DATA", 354)
        c.send(BODY + ".\r\n")
        qid = re.search(r"queued as (\w+)", c.expect(250)).group(1)
        c.cmd("MAIL FROM:<me@example.com>", 250)       # MAIL is not limit_rcpt's
        c.cmd("RCPT TO:<i@example.org>", 450, "limit_rcpt 3/hour")
        c.cmd("QUIT", 221)
        head, _ = r.body(qid)
        assert "c@example.org" in head and "d@example.org" not in head, head
        lines = rejects(r, "RCPT")
        assert len(lines) == 2, lines                   # one per transaction
        assert re.search(r"reject: RCPT from \[127\.0\.0\.1\]:\d+: 450 4\.7\.1 <d@example\.org>: "
                         r"Recipient rate limit exceeded for your address; "
                         r"from=<me@example\.com>, limit=limit_rcpt 3/hour, "
                         r"address=127\.0\.0\.1, sent=2, pending=1, room_in=\d+s "
                         r"\(more in this transaction not logged\)$", lines[0]), lines


@test
def test_limit_rcpt_counts_per_login():
    with auth_running("limit_rcpt 2/hour\n", allow="127.0.0.0/8", password=PASSWORD) as r:
        c = login(r, "bob")
        assert c.send_message("bob@example.com", ["a@example.org", "b@example.org"], BODY)
        c.cmd("MAIL FROM:<bob@example.com>", 250)
        c.cmd("RCPT TO:<c@example.org>", 450,
              "Recipient rate limit exceeded for this login (limit_rcpt 2/hour)")
        c.cmd("QUIT", 221)
        # The same address without a login counts apart.
        c = plain(r)
        assert c.send_message("me@example.com", ["a@example.org", "b@example.org"], BODY)
        c.cmd("QUIT", 221)
        assert "limit=limit_rcpt 2/hour, user=bob, sent=2" in rejects(r, "RCPT")[0]


@test
def test_max_connections_per_client_421_and_closed():
    tls_port = free_port()
    extra = tls_conf() + "max_connections_per_client 2\nlisten 127.0.0.1:%d tls\n" % tls_port
    with running(extra=extra) as r:
        a, b = plain(r), plain(r)
        third = Client(r.port)
        third.expect(421, "relay.test Error: too many connections from your address, "
                     "try again later")
        assert third.closed()
        # On a TLS port the 421 comes inside TLS.
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
        t = Client.__new__(Client)
        t.sock = client_tls_context().wrap_socket(raw, server_hostname="relay.test")
        t.buf = b""
        t.expect(421, "too many connections from your address")
        assert t.closed()
        # One goes: the next may come in.
        a.cmd("QUIT", 221)
        assert a.closed()
        def greeted():
            d = Client(r.port)
            code, _ = d.reply()
            if code == 220:
                d.cmd("QUIT", 221)
                return True
            d.close()
            return False
        wait_for(greeted, 10, what="a free connection slot")
        b.cmd("QUIT", 221)
        lines = [l for l in r.log_text().splitlines() if "reject: connect from" in l]
        assert len(lines) >= 2, lines
        assert re.search(r"reject: connect from \[127\.0\.0\.1\]:\d+: 421 4\.7\.0 too many "
                         r"connections from your address; limit=max_connections_per_client 2, "
                         r"address=127\.0\.0\.1, open=2$", lines[0]), lines


@test
def test_reload_changes_a_limit_and_keeps_the_counts():
    with running(extra="limit_client 5/hour\n") as r:
        c = plain(r)
        for i in range(3):
            assert c.send_message("me@example.com", ["a@example.org"], BODY)
        c.cmd("QUIT", 221)
        rewrite(r, "limit_client 5/hour", "limit_client 3/hour")
        reload(r, "")
        c = plain(r)
        c.cmd("MAIL FROM:<me@example.com>", 450, "(limit_client 3/hour)")
        # Exempted: the address may send again; the count goes on meanwhile.
        reload(r, "limit_exempt 127.0.0.0/8\n")
        c.cmd("MAIL FROM:<me@example.com>", 250)
        c.cmd("RSET", 250)
        assert c.send_message("me@example.com", ["a@example.org"], BODY)
        # Back to per minute: what the last minute saw is kept.
        rewrite(r, "limit_exempt 127.0.0.0/8\n", "")
        rewrite(r, "limit_client 3/hour", "limit_client 4/minute")
        reload(r, "")
        c.cmd("MAIL FROM:<me@example.com>", 450, "(limit_client 4/minute)")
        c.cmd("QUIT", 221)


@test
def test_relayctl_policy_shows_the_rules_the_limits_and_the_counts():
    conf = ("limit_user 5/hour\nlimit_client 3/minute\nlimit_rcpt 10/hour\n"
            "sender_login bob bob@example.com @bob.example\ndeny_sender spam@example.com\n")
    with auth_running(conf, password=PASSWORD) as r:
        c = login(r, "bob")
        assert c.send_message("bob@example.com", ["a@example.org", "b@example.org"], BODY)
        assert c.send_message("bob@example.com", ["c@example.org"], BODY)
        c.cmd("MAIL FROM:<bob@example.com>", 250)      # a transaction under way
        rc, out, err = r.relayctl("policy", "127.0.0.1")
        assert rc == 0, err
        assert out.startswith("client address 127.0.0.1\n"
                              "  not in allow: relays only after logging in\n"), out
        assert "  deny_sender: 1 entry (%s): refused to every client\n" % r.conf in out, out
        assert re.search(r"^  limit_client 3/minute: 2 messages in the last minute, 1 in "
                         r"transactions now; full, room again in (1m )?\d+s$", out, re.M), out
        assert "  limit_rcpt 10/hour (without a login): 0 recipients in the last hour\n" in out
        assert "  max_connections_per_client: not set (1 open now)\n" in out, out
        rc, out, err = r.relayctl("policy", "bob")
        assert rc == 0, err
        lines = out.splitlines()
        assert lines[0] == "login bob (counted as bob, the same login as bob@relay.test)", out
        assert "  sender_login: bob may use 2 senders (others: 553 5.7.1):" in lines, out
        assert re.search(r"^    @bob\.example \(%s:\d+\)$" % re.escape(r.conf), out, re.M), out
        assert "  sender_login_strict" not in out
        assert ("  limit_user 5/hour: 2 messages in the last hour, 1 in transactions now"
                in lines), out
        assert "  limit_rcpt 10/hour: 3 recipients in the last hour" in lines, out
        # Given up, the transaction holds nothing; Cyrus' name is the same login.
        c.cmd("RSET", 250)
        rc, out2, _ = r.relayctl("policy", "BOB@relay.test")
        assert "  limit_user 5/hour: 2 messages in the last hour" in out2.splitlines(), out2
        rc, out, err = r.relayctl("policy", "::ffff:127.0.0.1")
        assert rc == 0 and out.startswith("client address 127.0.0.1\n"), (out, err)
        rc, out, err = r.relayctl("policy", "two words")
        assert rc == 2 and "not a login name or an IP address" in err, (rc, out, err)
        c.cmd("QUIT", 221)
        r.stop()
        # relayd gone: the file's rules, without counts, and it says so.
        rc, out, err = r.relayctl("policy", "bob")
        assert rc == 0, err
        assert "relayd is not running" in err, err
        assert "limits (relayd is not running: no counts)\n  limit_user 5/hour\n" in out, out


@test
def test_config_check_names_a_bad_limit():
    r = Relayd(extra="limit_user 100/day\n")
    try:
        out = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 1, out
        assert ('%s:6: limit_user: "100/day" is not N/hour or N/minute (like 100/hour; N at '
                'least 1)' % r.conf) in out.stderr.decode(), out
        rewrite(r, "100/day", "100/hour")
        out = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert out.returncode == 0 and b"configuration ok" in out.stdout, out
    finally:
        r.cleanup()


@test
def test_an_ipv6_client_is_counted_with_its_64():
    """max_connections_per_client counts an IPv6 client with the rest of its /64, so a
    host cannot dodge it by changing address; the log and relayctl policy say so."""
    port6 = free_port()
    with running(extra="max_connections_per_client 1\nlisten [::1]:%d\n" % port6) as r:
        first = Client.__new__(Client)
        first.sock = socket.create_connection(("::1", port6), timeout=10)
        first.buf = b""
        first.expect(220)
        second = Client.__new__(Client)
        second.sock = socket.create_connection(("::1", port6), timeout=10)
        second.buf = b""
        second.expect(421, "too many connections from your address")
        assert second.closed()
        line = [l for l in r.log_text().splitlines() if "reject: connect from" in l][0]
        assert re.search(r"reject: connect from \[::1\]:\d+: 421 4\.7\.0 .*"
                         r"address=::/64, open=1$", line), line
        rc, out, err = r.relayctl("policy", "::1")
        assert rc == 0, (out, err)
        assert out.startswith("client address ::1 (counted as ::/64)\n"), out
        assert "  max_connections_per_client 1: 1 open now\n" in out, out
        first.cmd("QUIT", 221)


if __name__ == "__main__":
    run()
