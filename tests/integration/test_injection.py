"""
test_injection — what a client says that ends up in text relayd writes: log
lines, the Received: header, DSNs, the envelope it sends on.
  - Addresses with shell and header metacharacters (the OpenSMTPD
    CVE-2020-7247 class: ";", backticks, "$()", "|", quotes in a quoted local
    part) are data, never code: relayd runs no shell, sends them on verbatim
    (they are valid addresses), logs them on one line (backslashes escaped),
    and a DSN quotes them inside its fields; CR/LF attempts, raw or xtext-
    encoded (ORCPT, ENVID), never become a line of their own.
  - EHLO names and AUTH identities cannot inject a header into Received: (which
    holds the EHLO name, escaped, and never the login) or a line into the log.
"""
import base64
import email
import os
import re

from harness import Client, auth_running, running, run, sasldb, starttls, test, wait_for
from rawpeer import RawUpstream, raw_conf

MSG = "From: a@relay.test\r\nTo: b@example.org\r\nSubject: meta\r\n\r\nbody\r\n"
PWNED = "/tmp/relayd-cve-2020-7247-%d" % os.getpid()
SHELLY_SENDER = '"a;b`id`$(touch %s)|c&&d>e"@relay.test' % PWNED
SHELLY_RCPT = r'"x\"y;|$(reboot)`halt`\\z"@example.org'
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z relayd\[\d+\]: ")


def log_lines_sane(r):
    """Every line of the log is one of relayd's: nothing a client sent started a line."""
    text = r.log_text()
    assert "\r" not in text, "a CR in the log"
    bad = [l for l in text.splitlines() if not LOG_LINE.match(l)]
    assert not bad, bad[:3]
    return text


def header_fields(msg_bytes):
    """The names of the header fields of a message (continuation lines folded in)."""
    head = msg_bytes.split(b"\r\n\r\n", 1)[0]
    names = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        names.append(line.split(b":", 1)[0].decode(errors="replace").lower())
    return names


@test
def test_cve_2020_7247_shell_metacharacters_in_addresses_are_data():
    refused = (b"550-5.1.1 <" + SHELLY_RCPT.encode() + b">: no such user\r\n"
               b"550 5.1.1 $(id) `id` | ; done\r\n")

    def script(p):
        p.send(b"220 raw.test ESMTP\r\n")
        p.serve(rcpt_reply=lambda a: refused if "reboot" in a else None)

    with RawUpstream(script) as u:
        with running(extra=raw_conf(u.port)) as r:
            c = Client(r.port)
            c.hello()
            c.cmd("MAIL FROM:<%s> ENVID=+0D+0AX-Injected:+201" % SHELLY_SENDER, 250)
            c.cmd("RCPT TO:<%s> ORCPT=rfc822;x+0D+0ABcc:+20evil@example.com NOTIFY=FAILURE"
                  % SHELLY_RCPT, 250)
            c.cmd("DATA", 354)
            c.send(MSG + ".\r\n")
            qid = re.search(r"queued as (\w+)", c.expect(250)).group(1)
            c.cmd("QUIT", 221)
            env, dsn = u.wait_messages(1, timeout=30)[0]     # the DSN, to the sender
            wait_for(lambda: r.queued_ids() == [], 20, what="the queue to empty")
            assert not os.path.exists(PWNED), "a shell ran"

            # The log: one line each, the address as sent (a backslash as \x5C).
            log = log_lines_sane(r)
            logged_rcpt = SHELLY_RCPT.replace("\\", "\\x5C")
            assert "%s: client=[127.0.0.1]" % qid in log
            assert "from=<%s>, size=" % SHELLY_SENDER in log, log
            assert "%s: to=<%s>, relay=" % (qid, logged_rcpt) in log, log

            # The envelope relayd sent: the same addresses, verbatim.
            assert env["mail"] == "<>", env
            assert env["rcpts"] == ["<%s>" % SHELLY_SENDER], env
            sent = u.raw(0).decode(errors="replace")
            assert "MAIL FROM:<%s>\r\n" % SHELLY_SENDER in sent, sent[:500]
            assert "RCPT TO:<%s>\r\n" % SHELLY_RCPT in sent, sent[:500]

            # The DSN: addresses inside their fields, no field of the client's making.
            assert "bcc" not in header_fields(dsn), header_fields(dsn)
            assert b"\r\nBcc:" not in dsn, dsn
            rep = email.message_from_bytes(dsn)
            assert rep["To"] == "<%s>" % SHELLY_SENDER, rep["To"]
            status = "\n".join(str(p) for p in rep.get_payload()[1].get_payload())
            assert "Final-Recipient: rfc822; %s" % SHELLY_RCPT in status, status
            orcpt = re.search(r"^Original-Recipient: (.*)$", status, re.M).group(1)
            assert orcpt == "rfc822;x Bcc: evil@example.com", orcpt
            envid = re.search(r"^Original-Envelope-Id: (.*)$", status, re.M).group(1)
            assert envid == "X-Injected: 1", envid
            assert "x-injected" not in header_fields(dsn)


@test
def test_cve_2020_7247_cr_lf_in_addresses_never_reach_the_queue():
    with running() as r:
        c = Client(r.port)
        c.hello()
        # CRLF ends the command: what follows is a command of its own, refused.
        c.send("MAIL FROM:<a@example.com\r\nRCPT TO:<victim@example.org>>\r\n")
        c.expect(501)
        c.expect(503)
        c.cmd("MAIL FROM:<\"a\\\rb\"@example.com>", 521)     # a bare CR, quoted or not
        assert c.closed()
        c = Client(r.port)
        c.hello()
        c.send("MAIL FROM:<\"a\nb\"@example.com>\r\n")
        c.expect(521, "bare <LF>")
        assert c.closed()
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<\"a\\\x01b\"@example.com>", 501, "5.5.2")  # controls, even quoted
        c.cmd("QUIT", 221)
        assert r.queued_ids() == []
        log_lines_sane(r)


# Printable: taken, and written escaped (a backslash as \x5C), cut to fit a header line.
EHLOS = {
    "fake_trace": "x (forged.example [10.0.0.1]) by mx.victim.example; Bcc: evil@example.com",
    "backslash": "a\\b\\c",
    "long": "\\" * 500,
}
# Not printable ASCII: refused before it is kept anywhere.
BAD_EHLOS = ["evil\x01\x1b[31m.example", "a\tb", "a\x7fb", "caf\xe9.example", "x\x00y"]


@test
def test_header_injection_through_ehlo_into_received():
    with running() as r:
        qids = {}
        for name, helo in EHLOS.items():
            c = Client(r.port)
            c.expect(220)
            c.cmd("EHLO " + helo, 250)
            qids[name] = c.send_message("a@example.com", ["b@example.org"], MSG)
            c.cmd("QUIT", 221)
        c = Client(r.port)
        c.expect(220)
        for helo in BAD_EHLOS:
            c.send(b"EHLO " + helo.encode("latin-1") + b"\r\n")
            code, lines = c.reply()                 # 501, or 500 for a NUL
            assert code in (500, 501) and lines[0].startswith("5.5.2"), (helo, code, lines)
        c.cmd("MAIL FROM:<a@example.com>", 503, "5.5.1")          # no EHLO was taken
        c.cmd("QUIT", 221)
        # EHLO name, CRLF, "Bcc: …": the Bcc is a command (refused), not a header.
        c = Client(r.port)
        c.expect(220)
        c.send("EHLO x\r\nBcc: evil@example.com\r\n")
        c.expect(250)
        c.expect(500, "5.5.2")
        qids["crlf"] = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        c = Client(r.port)
        c.expect(220)
        c.cmd("EHLO x\nBcc: evil@example.com", 521)
        assert c.closed()

        for name, qid in qids.items():
            _, body = r.body(qid)
            fields = header_fields(body)
            assert fields.count("received") == 1 and "bcc" not in fields, (name, fields)
            first = body.split(b"\r\n", 1)[0]
            assert len(first) <= 998, (name, len(first))
            assert all(0x20 <= b < 0x7f for b in first), (name, first)
            assert first.startswith(b"Received: from "), first
        _, body = r.body(qids["backslash"])
        assert body.startswith(b"Received: from a\\x5Cb\\x5Cc ("), body[:80]
        _, body = r.body(qids["long"])
        assert body.startswith(b"Received: from " + b"\\x5C" * 60), body[:80]
        _, body = r.body(qids["fake_trace"])
        assert body.startswith(b"Received: from " + EHLOS["fake_trace"].encode() + b" ("), body[:200]
        _, body = r.body(qids["crlf"])
        assert body.startswith(b"Received: from x ("), body[:80]
        log = log_lines_sane(r)
        assert "helo=<a\\x5Cb\\x5Cc>" in log, log


def plain(authzid, authcid, password):
    return base64.b64encode(authzid + b"\0" + authcid + b"\0" + password).decode()


@test
def test_header_injection_through_auth_identity():
    user = "o`neil;$(id)|x"
    with auth_running(password="s3cret pass") as r:
        sasldb(r.dir, ((user, "s3cret pass"),))     # a second user in the same sasldb
        c = Client(r.port)
        c.hello()
        starttls(c)
        c.cmd("EHLO client.test", 250)
        # CR LF inside the identities (base64 carries any byte): refused, logged on one line.
        c.cmd("AUTH PLAIN " + plain(b"", b"bob\r\nBcc: evil@example.com", b"s3cret pass"), 535)
        c.cmd("AUTH PLAIN " + plain(b"evil\r\nX-Injected: 1", b"bob", b"s3cret pass"), 535)
        # A real login whose name is all metacharacters.
        c.cmd("AUTH PLAIN " + plain(b"", user.encode(), b"s3cret pass"), 235)
        qid = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        _, body = r.body(qid)
        head = body.split(b"\r\n\r\n", 1)[0]
        assert b"neil" not in head and header_fields(body).count("received") == 1, head
        assert b"with ESMTPSA id" in head, head
        log = log_lines_sane(r)
        assert "sasl_username=%s@relay.test" % user in log, log


if __name__ == "__main__":
    run()
