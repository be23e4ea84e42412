"""
test_smuggling — SMTP smuggling is impossible, in both directions.
Receiving: only <CRLF>.<CRLF> ends DATA; every other end-of-data look-alike,
and any bare CR or LF in DATA or in a command, ends the session with 521 and
queues nothing (the sender's next "message" can never become a second
message of ours); look-alikes without a bare CR or LF (a dot after text, NUL
bytes) are body text of one message.  Sending: what relayd writes to an
upstream, seen raw on the wire (rawpeer.py), has CRLF line ends only and
every line that starts with "." dot-stuffed — for a client's message and
for a DSN relayd writes itself (tests/unit/test_smtp_send.c stores bare CR
and LF in the queue directly and checks the same).
"""
import re

from harness import Client, running, run, test, wait_for
from rawpeer import RawUpstream, bare_line_ends, raw_conf

SMUGGLED = ("MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            "Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")

# Each looks like an end of data to some receiver somewhere, and to us is a bare CR or LF.
VARIANTS = {
    "lf_dot_lf": "\n.\n",
    "cr_dot_cr": "\r.\r",
    "lf_dot_crlf": "\n.\r\n",
    "crlf_dot_lf": "\r\n.\n",
    "crlf_dot_cr": "\r\n.\r",
    "cr_dot_crlf": "\r.\r\n",
    "crlf_dot_cr_lf_split": "\r\n.\r\r\n",
    "lf_dot_cr_lf": "\n.\r\n",
    "crlf_dot_lf_crlf": "\r\n.\n\r\n",
    "cr_dot_lf": "\r.\n",
    "lf_dot_cr": "\n.\r",
    "crlf_dot_cr_nul_lf": "\r\n.\r\x00\n",
}


def smuggle(variant):
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send("Subject: first\r\n\r\nfirst body" + variant + SMUGGLED)
        code, lines = c.reply()
        assert code == 521, (variant, code, lines)
        assert "5.5.2" in lines[0]
        assert c.closed()
        assert r.queued_ids() == [], r.queued_ids()


for _name, _seq in VARIANTS.items():
    def _make(seq):
        return lambda: smuggle(seq)
    _fn = _make(_seq)
    _fn.__name__ = "test_smuggling_" + _name
    test(_fn)


# Each looks like an end of data (or hides one), yet has no bare CR or LF: the
# smuggled commands after it are body text, and the proper end makes one message.
NOT_AN_END = {
    "dot_crlf_without_preceding_crlf": "text.\r\n",
    "nul_after_dot": "\r\n.\x00\r\n",
    "nul_before_dot": "\r\n\x00.\r\n",
    "nul_line_then_dot": "\r\n\x00\r\n.\x00\r\n",
    "dot_space_crlf": "\r\n. \r\n",
}


def not_an_end(variant):
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send("Subject: first\r\n\r\nfirst body" + variant + SMUGGLED)   # its end is real
        qid = re.search(r"queued as ([0-9A-F]{12})", c.expect(250)).group(1)
        c.cmd("QUIT", 221)
        assert r.queued_ids() == [qid], r.queued_ids()
        _, body = r.body(qid)
        assert b"MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@example.org>" in body, body
        assert body.endswith(b"\r\nsmuggled\r\n"), body[-100:]


for _name, _seq in NOT_AN_END.items():
    def _make(seq):
        return lambda: not_an_end(seq)
    _fn = _make(_seq)
    _fn.__name__ = "test_smuggling_not_an_end_" + _name
    test(_fn)


@test
def test_bare_lf_in_command_is_refused():
    with running() as r:
        c = Client(r.port)
        c.expect(220)
        c.send("EHLO x\nMAIL FROM:<a@example.com>\r\n")
        c.expect(521, "bare <LF>")
        assert c.closed()


@test
def test_bare_cr_in_command_is_refused():
    with running() as r:
        c = Client(r.port)
        c.expect(220)
        c.send("EHLO x\rMAIL FROM:<a@example.com>\r\n")
        c.expect(521, "bare <CR>")
        assert c.closed()


@test
def test_bare_lf_after_long_line_is_refused():
    with running() as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send("x" * 3000 + "\n.\n" + SMUGGLED)
        c.expect(521)
        assert c.closed()
        assert r.queued_ids() == []


@test
def test_bare_cr_inside_long_line_is_refused():
    with running() as r:
        for tail in ("\r.\r" + "x" * 3000, "x" * 3000 + "\r.\r\n"):
            c = Client(r.port)
            c.hello()
            c.cmd("MAIL FROM:<a@example.com>", 250)
            c.cmd("RCPT TO:<b@example.org>", 250)
            c.cmd("DATA", 354)
            c.send("y" * 2000 + tail)
            c.expect(521, "bare <CR>")
            assert c.closed()
        assert r.queued_ids() == []


@test
def test_proper_end_after_dot_lookalikes_in_body():
    # A dot line with trailing text, or a dot inside a line, is body text.
    with running() as r:
        c = Client(r.port)
        c.hello()
        qid = c.send_message("a@example.com", ["b@example.org"],
                             "Subject: x\r\n\r\n. not the end\r\nmid.dle\r\n")
        assert qid
        c.cmd("QUIT", 221)
        _, stored = r.body(qid)
        assert stored.endswith(b"\r\n\r\n not the end\r\nmid.dle\r\n"), stored


# --- sending: what an upstream receives ------------------------------------------------

DOTS = ("Subject: dots\r\n\r\n.\r\nMAIL FROM:<smuggled@evil.example>\r\n..\r\n"
        ".leading\r\n..two\r\nmid.dle.\r\n . \r\n.\tx\r\n.\r\nlast\r\n")


def stuff(text):
    return re.sub(rb"(?m)^\.", b"..", text)


def relay_through_raw(rcpt_reply=None):
    """A RawUpstream serving normally; relayd routing everything to it."""
    return RawUpstream(lambda p: (p.send(b"220 raw.test ESMTP\r\n"),
                                  p.serve(rcpt_reply=rcpt_reply)))


@test
def test_smuggling_outbound_dot_stuffed_with_crlf_only():
    """A body whose lines start with dots (one line a lone "." once unstuffed,
    followed by SMTP commands) leaves relayd stuffed: on the wire "..", never
    an end of data before the real one, and no bare CR or LF anywhere."""
    with relay_through_raw() as u:
        with running(extra=raw_conf(u.port)) as r:
            c = Client(r.port)
            c.hello()
            qid = c.send_message("a@relay.test", ["b@example.org"], stuff(DOTS.encode()))
            c.cmd("QUIT", 221)
            u.wait_messages(1)
            wait_for(lambda: r.queued_ids() == [], 20, what="the queue to empty")
            _, data = u.messages()[0]
            stored_head, _, _ = data.partition(b"Subject: dots")
            assert data.endswith(stuff(DOTS.encode()) + b".\r\n"), data[-300:]
            assert stored_head.startswith(b"Received: ") and qid.encode() in stored_head
            assert b"\r\n..\r\nMAIL FROM:<smuggled@evil.example>\r\n" in data
            assert data.count(b"\r\n.\r\n") == 1, data
            wire = u.raw(0)
            assert bare_line_ends(wire) == [], bare_line_ends(wire)[:5]
            assert wire.count(b"\r\n.\r\n") == 1


@test
def test_smuggling_outbound_dsn_is_framed_and_stuffed():
    """A recipient refused with a hostile multi-line reply: the DSN relayd writes
    (the reply quoted, the original's dotted lines returned) goes out framed
    the same way."""
    hostile = (b"550-5.1.1 no such user\r\n550-.\r\n550-..\r\n"
               b"550 5.1.1 \x01\x1b[2J\x7f\x00 end\r\n")
    with relay_through_raw(lambda a: hostile if "bob@" in a else None) as u:
        with running(extra=raw_conf(u.port)) as r:
            c = Client(r.port)
            c.hello()
            c.send_message("alice@relay.test", ["bob@example.org"], stuff(DOTS.encode()))
            c.cmd("QUIT", 221)
            msgs = u.wait_messages(1, timeout=30)
            env, dsn = msgs[0]
            assert env["mail"].startswith("<>"), env
            assert b"multipart/report" in dsn and b"smuggled@evil.example" in dsn, dsn[:500]
            assert dsn.count(b"\r\n.\r\n") == 1, dsn
            assert b"\r\n..leading\r\n" in dsn, dsn
            for n in range(u.connections()):
                wire = u.raw(n)
                assert bare_line_ends(wire) == [], (n, bare_line_ends(wire)[:5])
                assert b"\x1b" not in wire and b"\x00" not in wire and b"\x01" not in wire


if __name__ == "__main__":
    run()
