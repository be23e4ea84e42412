"""
test_upstream_hostile — an upstream that attacks relayd's client side, from
a raw scripted peer (rawpeer.py): a reply injected before the STARTTLS
handshake (CVE-2011-0411, client side), and multi-line replies with hostile
lengths and continuation markers (the OpenSMTPD CVE-2020-8794 class): an
endless "250-", lines over 512, 1000 and 64K octets, mixed codes within one
reply, a line without a code.  Each is an error that defers the message (never
a crash, a hang, unbounded memory, or a reply taken for another), and the
message goes out once the upstream behaves.  tests/unit/test_smtp_reply.c has
the same rules one reply at a time.
"""
import re
import socket
import time

from harness import Client, certs, running, run, test, wait_for
from rawpeer import PeerGone, RawUpstream, raw_conf

MSG = "From: a@relay.test\r\nTo: b@example.org\r\nSubject: hostile\r\n\r\nbody\r\n"


def submit(r):
    c = Client(r.port)
    c.hello()
    qid = c.send_message("alice@relay.test", ["bob@example.org"], MSG)
    c.cmd("QUIT", 221)
    return qid


def lines_for(r, qid):
    return [l for l in r.log_text().splitlines() if "%s: to=<bob@example.org>" % qid in l]


def deferred_then_sent(r, u, qid, why, timeout=30):
    """The first attempt deferred with why, a later one sent; one copy arrived."""
    wait_for(lambda: any("status=sent" in l for l in lines_for(r, qid)), timeout,
             what="%s to be sent" % qid)
    lines = lines_for(r, qid)
    assert "status=deferred" in lines[0] and why in lines[0], lines
    assert [l for l in lines if "status=sent" in l] == [lines[-1]], lines
    assert len(u.messages()) == 1, u.messages()
    assert r.queued_ids() == [] or wait_for(lambda: r.queued_ids() == [], 10)
    assert not u.errors, u.errors


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


# --- STARTTLS response injection (CVE-2011-0411, the client's side) ----------------------

@test
def test_starttls_response_injection_by_the_upstream_is_refused():
    """The upstream answers STARTTLS with "220 ready" and, in the same write, a
    "250 injected" that a careless client would read after the handshake as the
    answer to its EHLO.  relayd drops the connection before any handshake and
    sends nothing more; the message is deferred, then delivered over real TLS."""
    after_starttls = {}

    def script(p):
        p.send(b"220 raw.test ESMTP\r\n")
        if p.n == 0:
            p.line()                                        # EHLO
            p.send(p.ehlo_reply(starttls=True))
            assert p.line() == "STARTTLS"
            mark = len(p.received)
            p.send(b"220 2.0.0 ready\r\n250-injected\r\n250 PIPELINING\r\n")
            try:                                            # whatever comes now
                p.read_some(1, timeout=5)
            except PeerGone:
                pass
            after_starttls["bytes"] = bytes(p.received[mark:])
            return
        p.serve(starttls=True)

    with RawUpstream(script) as u:
        block = " ca_file %s\n" % certs()["ca"]
        with running(extra=raw_conf(u.port, tls="starttls", block=block)) as r:
            qid = submit(r)
            deferred_then_sent(r, u, qid, "data after the STARTTLS reply (injection?)")
            assert after_starttls["bytes"] == b"", after_starttls    # no MAIL, no handshake
            env, _ = u.messages()[0]
            assert env["tls"], env                                  # delivered encrypted


# --- multi-line replies with hostile lengths and markers (CVE-2020-8794 class) -----------

def hostile_then_normal(hostile):
    """A script: connection 0 greets and runs hostile(p) after EHLO; the rest are normal."""
    def script(p):
        if p.n == 0:
            hostile(p)
            return
        p.send(b"220 raw.test ESMTP\r\n")
        p.serve()
    return script


def hostile_reply_is_deferred(hostile, why, check_rss=False):
    with RawUpstream(hostile_then_normal(hostile)) as u:
        with running(extra=raw_conf(u.port)) as r:
            before = rss_kb(r.proc.pid)
            qid = submit(r)
            deferred_then_sent(r, u, qid, why)
            if check_rss:
                grew = rss_kb(r.proc.pid) - before
                assert grew < 64 * 1024, "relayd grew by %d KiB" % grew
            # Still serving its clients.
            assert submit(r)


def endless(p, first, line, limit_bytes=64 << 20, limit_s=15):
    """Send first, then line again and again until relayd hangs up (bounded)."""
    p.send(first)
    sent, t0 = 0, time.monotonic()
    chunk = line * max(1, 65536 // len(line))
    while sent < limit_bytes and time.monotonic() - t0 < limit_s:
        try:
            p.sock.send(chunk)
            sent += len(chunk)
        except socket.timeout:
            continue    # relayd is not reading (yet): that is no answer either way
        except OSError:
            return      # relayd closed: what we want
    raise AssertionError("relayd still connected after %d bytes of %r" % (sent, line[:20]))


def after_ehlo(send):
    def hostile(p):
        p.send(b"220 raw.test ESMTP\r\n")
        p.line()
        send(p)
    return hostile


def after_mail(send):
    def hostile(p):
        p.send(b"220 raw.test ESMTP\r\n")
        p.line()
        p.send(p.ehlo_reply())
        p.line()                                            # MAIL FROM
        send(p)
    return hostile


@test
def test_cve_2020_8794_endless_continuation_lines_are_an_error():
    hostile_reply_is_deferred(after_ehlo(lambda p: endless(p, b"", b"250-more\r\n")),
                              "malformed reply from the upstream", check_rss=True)


@test
def test_cve_2020_8794_reply_line_of_64k_without_end_is_an_error():
    hostile_reply_is_deferred(after_ehlo(lambda p: endless(p, b"250-", b"x" * 4096)),
                              "malformed reply from the upstream", check_rss=True)


@test
def test_cve_2020_8794_mixed_codes_in_one_reply_are_an_error():
    hostile_reply_is_deferred(
        after_mail(lambda p: (p.send(b"250-2.1.0 fine\r\n550 5.7.1 or not\r\n"), p.idle(10))),
        "malformed reply from the upstream")


@test
def test_cve_2020_8794_reply_line_without_a_code_is_an_error():
    hostile_reply_is_deferred(
        after_mail(lambda p: (p.send(b"250-2.1.0 Ok\r\nRCPT TO:<injected@evil.example>\r\n"),
                              p.idle(10))),
        "malformed reply from the upstream")


@test
def test_cve_2020_8794_multiline_reply_lines_of_512_and_1000_octets_are_read():
    """Long is not hostile: RFC 5321 says 512, servers send more; up to relayd's
    bound (2048 octets a line) every line is taken."""
    def script(p):
        p.send(b"220-" + b"g" * 506 + b"\r\n220 raw.test ESMTP\r\n")         # 512 with CRLF
        p.line()
        p.send(b"250-raw.test\r\n250-X" + b"k" * 993 + b"\r\n250 PIPELINING\r\n")  # 1000
        p.line()
        p.send(b"250-2.1.0 " + b"m" * 1000 + b"\r\n250 2.1.0 Ok\r\n")
        p.serve()
    with RawUpstream(script) as u:
        with running(extra=raw_conf(u.port)) as r:
            qid = submit(r)
            wait_for(lambda: any("status=sent" in l for l in lines_for(r, qid)), 20,
                     what="the message to be sent")
            assert len(lines_for(r, qid)) == 1 and len(u.messages()) == 1
            assert not u.errors, u.errors


if __name__ == "__main__":
    run()
