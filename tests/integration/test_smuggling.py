"""
test_smuggling — SMTP smuggling is impossible: only <CRLF>.<CRLF> ends DATA;
every other end-of-data look-alike, and any bare CR or LF in DATA or in a
command, ends the session with 521 and queues nothing (the sender's next
"message" can never become a second message of ours).
"""
from harness import Client, running, run, test

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


if __name__ == "__main__":
    run()
