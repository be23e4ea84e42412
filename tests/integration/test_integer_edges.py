"""
test_integer_edges — numbers at their edges, where parsers overflow, wrap or
count one off: SIZE= of 0, 2^64-1, 2^64, -1, 1e9 and 21 digits; a message of
exactly max_message_size octets and one more (counted after dot-unstuffing,
as stored); max_recipients and one more in one pipelined burst; BDAT, which
relayd does not offer, with a 2^64 chunk size; and an upstream's EHLO SIZE
that is not a number.
"""
import re

from harness import Client, running, run, test, wait_for
from rawpeer import RawUpstream, raw_conf

MSG = "Subject: edges\r\n\r\nbody\r\n"


@test
def test_size_parameter_edges():
    with running(extra="max_message_size 10K\n") as r:
        c = Client(r.port)
        c.hello()
        rows = [
            ("0", 250, "2.1.0"),                        # an estimate: "unknown" is fine
            ("10240", 250, "2.1.0"),                    # exactly the limit
            ("10241", 552, "5.3.4"),
            ("18446744073709551615", 552, "5.3.4"),     # 2^64 - 1
            ("18446744073709551616", 552, "5.3.4"),     # 2^64: too big, not a wrap to 0
            ("99999999999999999999", 552, "5.3.4"),     # 20 digits, RFC 1870's most
            ("000000000000000000001", 501, "5.5.4"),    # 21 digits: not a size-value
            ("-1", 501, "5.5.4"),
            ("+1", 501, "5.5.4"),
            ("1e9", 501, "5.5.4"),
            ("0x10", 501, "5.5.4"),
            ("", 501, "5.5.4"),
        ]
        for value, code, enh in rows:
            text = c.cmd("MAIL FROM:<a@example.com> SIZE=%s" % value, code)
            assert text.startswith(enh), (value, text)
            if code == 250:
                c.cmd("RSET", 250)
        # SIZE=0, then a real message: the declaration is not held against it.
        c.cmd("MAIL FROM:<a@example.com> SIZE=0", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(MSG + ".\r\n")
        c.expect(250, "queued as")
        c.cmd("QUIT", 221)


def body_of(size):
    """A body of exactly size octets once unstuffed, with dotted lines in it."""
    head = "Subject: exact\r\n\r\n..dotted\r\n"          # stored as ".dotted"
    stored = len(head) - 1
    line = "x" * 98 + "\r\n"
    n = (size - stored) // len(line)
    tail = size - stored - n * len(line)
    assert tail >= 2
    return head + line * n + "y" * (tail - 2) + "\r\n"


@test
def test_message_of_exactly_max_message_size_and_one_more():
    with running(extra="max_message_size 10K\n") as r:
        c = Client(r.port)
        c.hello()
        qid = c.send_message("a@example.com", ["b@example.org"], body_of(10240))
        c.send_message("a@example.com", ["b@example.org"], body_of(10241), code=552)
        c.cmd("QUIT", 221)
        assert r.queued_ids() == [qid]
        _, stored = r.body(qid)
        assert len(stored.split(b"\r\n\r\n", 1)[1]) + len(b"Subject: exact\r\n\r\n") == 10240


@test
def test_max_recipients_and_one_more_in_one_burst():
    with running(extra="max_recipients 1000\n") as r:
        c = Client(r.port, timeout=60)
        c.hello()
        burst = "MAIL FROM:<a@example.com>\r\n" + "".join(
            "RCPT TO:<r%d@example.org>\r\n" % i for i in range(1001)) + "DATA\r\n"
        c.send(burst)
        c.expect(250, "2.1.0")
        for i in range(1000):
            c.expect(250, "2.1.5")
        c.expect(452, "4.5.3")
        c.expect(354)
        c.send(MSG + ".\r\n")
        qid = re.search(r"queued as (\w+)", c.expect(250)).group(1)
        c.cmd("QUIT", 221)
        assert re.search(r"%s: .*nrcpt=1000$" % qid, r.log_text(), re.M), r.log_text()[-500:]


@test
def test_bdat_with_a_2_64_chunk_is_an_unknown_command():
    """relayd offers no CHUNKING: BDAT is refused, and the "chunk" after it is read
    as commands (each refused), never as message data."""
    with running(extra="max_errors 50\n") as r:
        c = Client(r.port)
        assert "CHUNKING" not in c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("RCPT TO:<b@example.org>", 250)
        c.send("BDAT 18446744073709551616 LAST\r\nSubject: x\r\n\r\nhi\r\n")
        for _ in range(4):                  # BDAT, "Subject: x", "", "hi"
            code, _ = c.reply()
            assert code in (500, 502), code
        c.cmd("BDAT -1", 500)
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)
        assert r.queued_ids() == []


@test
def test_upstream_ehlo_size_that_is_not_a_number_is_no_limit():
    """EHLO "SIZE 1e9" (or "SIZE -1", or past 2^64) from an upstream is not a
    limit of 1 octet, nor a wrapped one: ignored as Postfix ignores it, and the
    message goes out; a real "SIZE 100" still returns a bigger one at once."""
    for size, want in ((b"SIZE 1e9", "status=sent"), (b"SIZE -1", "status=sent"),
                       (b"SIZE 12abc", "status=sent"),
                       (b"SIZE 18446744073709551616", "status=sent"),
                       (b"SIZE 0", "status=sent"), (b"SIZE 100", "status=bounced")):
        def script(p):
            p.send(b"220 raw.test ESMTP\r\n")
            p.line()
            p.send(b"250-raw.test\r\n250-" + size + b"\r\n250 8BITMIME\r\n")
            p.serve()
        with RawUpstream(script) as u:
            with running(extra=raw_conf(u.port)) as r:
                c = Client(r.port)
                c.hello()
                qid = c.send_message("a@relay.test", ["b@example.org"],
                                     "Subject: s\r\n\r\n%s\r\n" % ("x" * 200))
                c.cmd("QUIT", 221)
                line = wait_for(lambda: [l for l in r.log_text().splitlines()
                                         if "%s: to=<b@example.org>" % qid in l], 20,
                                what="an attempt with %r" % size)[0]
                assert want in line, (size, line)
                if want == "status=bounced":
                    assert "dsn=5.3.4" in line and "limit of 100 bytes" in line, line
                if size in (b"SIZE 1e9", b"SIZE -1"):
                    assert 'EHLO %s" is not a number' % size.decode().replace(" ", ' "') \
                        in r.log_text(), r.log_text()
                assert not u.errors, u.errors


if __name__ == "__main__":
    run()
