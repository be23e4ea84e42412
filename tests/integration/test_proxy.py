"""
test_proxy — relayd behind HAProxy: on a `listen ADDR:PORT proxy` port every
connection starts with a PROXY protocol header (v1 text or v2 binary) naming
the real client, and that address is the one `allow`, the log lines, the
Received: header and the AUTH penalty see.  A connection without a valid
header is closed without a word.  A raw socket from 127.0.0.1 plays HAProxy.
"""
import base64
import re
import signal
import socket
import ssl
import struct
import time

from harness import (Client, auth_running, client_tls_context, free_port, run, running,
                     starttls, test, tls_conf, wait_for)

MSG = "Subject: proxied\r\n\r\nhello\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
TLVS = b"\x04\x00\x03abc" + b"\x05\x00\x06id-123"      # NOOP and UNIQUE_ID: skipped


def v1(src, sport, dst="127.0.0.1", dport=2525):
    family = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (family, src, dst, sport, dport)).encode()


def v2(src, sport, dst="127.0.0.1", dport=2525, tlvs=b""):
    """HAProxy's send-proxy-v2: PROXY command, TCP over IPv4 or IPv6."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    block = (socket.inet_pton(family, src) + socket.inet_pton(family, dst) +
             struct.pack("!HH", sport, dport) + tlvs)
    return (V2_SIGNATURE + bytes([0x21, 0x21 if family == socket.AF_INET6 else 0x11]) +
            struct.pack("!H", len(block)) + block)


def v2_local():
    """What HAProxy's health checks send: LOCAL, no address."""
    return V2_SIGNATURE + b"\x20\x00" + struct.pack("!H", 0)


def proxied_listener(extra=""):
    """running() with a second listener that expects the PROXY header; (context, its port)."""
    port = free_port()
    return running(extra="listen 127.0.0.1:%d proxy\n" % port + extra), port


def relay_reply(c):
    """EHLO, MAIL and one outside recipient: the RCPT reply code tells whether it may relay."""
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<a@example.com>", 250)
    c.send("RCPT TO:<b@example.org>\r\n")
    return c.reply()[0]


def refused_silently(c, timeout=3):
    """The server closed the connection within timeout and never said a byte."""
    return c.closed(timeout) and c.buf == b""


def log_lines(r, pattern):
    return re.findall(pattern, r.log_text(), re.M)


def wait_for_log(r, pattern, count=1):
    """Wait until count lines of the log match pattern (a line ends at $)."""
    wait_for(lambda: len(log_lines(r, pattern)) == count,
             what="%d log line(s) matching %s" % (count, pattern))


class MemoryTLS:
    """A TLS client over a plain socket through memory BIOs, so that the PROXY
    header and the ClientHello leave in one send — the way HAProxy's first bytes
    reach relayd.  Offers the sendall/recv/settimeout a harness Client uses."""

    def __init__(self, sock, first):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_tls_context().wrap_bio(self.incoming, self.outgoing,
                                                 server_hostname="relay.test")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                out, first = first + self.outgoing.read(), b""
                if out:
                    self.sock.sendall(out)
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("closed during the handshake")
                self.incoming.write(data)
        self._flush()

    def _flush(self):
        out = self.outgoing.read()
        if out:
            self.sock.sendall(out)

    def sendall(self, data):
        self.tls.write(data)
        self._flush()

    def recv(self, n):
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    return b""
                self.incoming.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


@test
def test_v1_header_names_the_client_and_allow_no_longer_matches():
    ctx, port = proxied_listener()
    with ctx as r:
        # relayd logs its listeners once its loop runs, a moment after the kernel
        # already takes connections (what running() waits for).
        wait_for(lambda: "listening on 127.0.0.1:%d (PROXY protocol)" % port in r.log_text(),
                 10, what="the listening line")
        c = Client(port)
        c.send(v1("203.0.113.7", 40000))
        assert "relay.test ESMTP" in c.expect(220)
        # 127.0.0.1 is inside `allow 127.0.0.0/8`; 203.0.113.7, the client, is not.
        assert relay_reply(c) == 554
        c.cmd("QUIT", 221)
        assert c.closed()
        wait_for_log(r, r"disconnect from \[203\.0\.113\.7\]:40000 ")
        lines = log_lines(r, r"connect from \[203\.0\.113\.7\]:40000 via \[127\.0\.0\.1\]:\d+$")
        assert len(lines) == 1, r.log_text()


@test
def test_v1_header_claiming_an_allowed_address_relays():
    ctx, port = proxied_listener()
    with ctx as r:
        c = Client(port)
        c.send(v1("127.0.0.5", 41000))
        c.expect(220)
        c.cmd("EHLO client.test", 250)
        qid = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        log = r.log_text()
        assert re.search(r"connect from \[127\.0\.0\.5\]:41000 via \[127\.0\.0\.1\]:\d+ "
                         r"\(allowed network\)", log), log
        assert "%s: client=[127.0.0.5]:41000, helo=<client.test>" % qid in log, log
        _, body = r.body(qid)
        received = body.split(b"\r\n\r\n")[0]
        assert b"Received: from client.test ([127.0.0.5])" in received, received


@test
def test_v2_ipv4_and_ipv6_with_tlvs():
    ctx, port = proxied_listener()
    with ctx as r:
        c = Client(port)
        c.send(v2("203.0.113.7", 40002, tlvs=TLVS))
        c.expect(220)
        assert relay_reply(c) == 554
        c.cmd("QUIT", 221)

        c = Client(port)
        c.send(v2("2001:db8::7", 40003, dst="2001:db8::25", tlvs=TLVS))
        c.expect(220)
        assert relay_reply(c) == 554
        c.cmd("QUIT", 221)

        c = Client(port)                                # `allow … ::1`
        c.send(v2("::1", 40004, dst="::1"))
        c.expect(220)
        assert relay_reply(c) == 250
        c.cmd("QUIT", 221)
        log = r.log_text()
        assert re.search(r"connect from \[203\.0\.113\.7\]:40002 via \[127\.0\.0\.1\]:\d+$",
                         log, re.M), log
        assert re.search(r"connect from \[2001:db8::7\]:40003 via \[127\.0\.0\.1\]:\d+$",
                         log, re.M), log
        assert re.search(r"connect from \[::1\]:40004 via .*\(allowed network\)", log), log


@test
def test_v2_local_and_v1_unknown_keep_the_real_peer():
    ctx, port = proxied_listener()
    with ctx as r:
        for header in (v2_local(), b"PROXY UNKNOWN\r\n",
                       b"PROXY UNKNOWN 203.0.113.7 127.0.0.1 40000 25\r\n"):
            c = Client(port)
            c.send(header)
            c.expect(220)
            assert relay_reply(c) == 250, header        # 127.0.0.1, inside allow
            c.cmd("QUIT", 221)
        lines = log_lines(r, r"connect from \[127\.0\.0\.1\]:\d+ \(allowed network\)$")
        assert len(lines) >= 3, r.log_text()
        assert "203.0.113.7" not in r.log_text()


@test
def test_plain_smtp_without_header_is_closed_without_greeting():
    ctx, port = proxied_listener()
    with ctx as r:
        c = Client(port)
        c.send("EHLO client.test\r\n")
        assert refused_silently(c)
        c = Client(port)
        c.send("GET / HTTP/1.0\r\n\r\n")
        assert refused_silently(c)
        wait_for_log(r, r"refused \[127\.0\.0\.1\]:\d+: no valid PROXY header "
                        r"\(no PROXY header\)$", 2)
        # the plain listener of the same relayd still talks SMTP
        c = Client(r.port)
        c.hello()
        c.cmd("QUIT", 221)


@test
def test_full_proxy_listener_closes_without_a_word():
    # At max_clients a plain listener says 421; before a PROXY header relayd must not
    # speak (HAProxy would hand the bytes to the client as the server's).
    ctx, port = proxied_listener("max_clients 1\n")
    with ctx as r:
        wait_for_log(r, r"disconnect from")     # the harness's probe no longer counts
        first = Client(port)
        first.send(v1("203.0.113.7", 40000, dport=port))
        first.expect(220)
        c = Client(port)
        assert refused_silently(c)
        wait_for_log(r, r"refused \[127\.0\.0\.1\]:\d+: 1 sessions \(max_clients\)")
        first.cmd("QUIT", 221)


@test
def test_malformed_headers_are_refused_at_once():
    bad = [
        b"PROXY TCP4 999.1.1.1 127.0.0.1 40000 25\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 70000 25\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 040000 25\r\n",
        b"PROXY TCP6 203.0.113.7 127.0.0.1 40000 25\r\n",
        b"PROXY TCP4 203.0.113.7  127.0.0.1 40000 25\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\n",
        b"PROXY UNKNOWN " + b"x" * 200,                 # no CRLF within 107 bytes
        V2_SIGNATURE + b"\x21\x11\xff\xff",             # longer than 536 bytes
        V2_SIGNATURE + b"\x21\x11\x00\x0b" + b"\x00" * 11,      # address block too short
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12,      # version 1
        V2_SIGNATURE + b"\x23\x11\x00\x0c" + b"\x00" * 12,      # command 3
        V2_SIGNATURE[:11] + b"\r",
        bytes(range(256)) * 4,
    ]
    ctx, port = proxied_listener()
    with ctx as r:
        for header in bad:
            c = Client(port)
            t0 = time.monotonic()
            c.send(header)
            assert refused_silently(c), header
            assert time.monotonic() - t0 < 3, header    # at once, not at the timeout
        wait_for_log(r, r"refused \[127\.0\.0\.1\]:\d+: no valid PROXY header \(.+\)$",
                     len(bad))
        c = Client(port)                                # relayd is still fine
        c.send(v1("203.0.113.7", 40000))
        c.expect(220)
        c.cmd("QUIT", 221)


@test
def test_header_split_over_many_sends():
    ctx, port = proxied_listener()
    with ctx as r:
        for header, addr in ((v1("203.0.113.8", 40010), "203.0.113.8"),
                             (v2("203.0.113.9", 40011, tlvs=TLVS), "203.0.113.9")):
            c = Client(port)
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(header)):
                c.send(header[i:i + 1])
                time.sleep(0.01)
            c.expect(220)
            assert relay_reply(c) == 554
            c.cmd("QUIT", 221)
            assert "connect from [%s]" % addr in r.log_text()


@test
def test_client_bytes_after_the_header_are_the_sessions():
    ctx, port = proxied_listener()
    with ctx as r:
        c = Client(port)
        c.send(v1("203.0.113.7", 40000) + b"EHLO early.test\r\n")
        c.expect(220)
        c.expect(250, "relay.test")
        c.cmd("QUIT", 221)
        c = Client(port)
        c.send(v2("203.0.113.7", 40001, tlvs=TLVS) + b"NOOP\r\n")
        c.expect(220)
        c.expect(250, "2.0.0")
        c.cmd("QUIT", 221)


@test
def test_implicit_tls_after_the_header():
    port = free_port()
    with running(extra=tls_conf() + "listen 127.0.0.1:%d tls proxy\n" % port) as r:
        # the header, then a handshake of its own
        c = Client(port)
        c.send(v2("203.0.113.7", 40020))
        c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="relay.test")
        c.expect(220)
        assert "STARTTLS" not in c.cmd("EHLO client.test", 250)
        c.cmd("QUIT", 221)
        # the header and the ClientHello in one segment, as HAProxy sends them
        c = Client(port)
        c.sock = MemoryTLS(c.sock, v1("203.0.113.8", 40021))
        c.expect(220)
        assert relay_reply(c) == 554
        c.cmd("QUIT", 221)
        wait_for_log(r, r"TLS from \[203\.0\.113\.8\]:40021: ")
        assert "TLS from [203.0.113.7]:40020" in r.log_text()
        # TLS without the header is no header
        c = Client(port)
        try:
            client_tls_context().wrap_socket(c.sock, server_hostname="relay.test")
            assert False, "handshake without a PROXY header succeeded"
        except (ssl.SSLError, OSError):
            pass
        wait_for_log(r, r"refused \[127\.0\.0\.1\]:\d+: no valid PROXY header")


@test
def test_slow_or_missing_header_times_out():
    ctx, port = proxied_listener()
    with ctx as r:
        silent = Client(port)
        partial = Client(port)
        partial.send(b"PROXY TCP4 203.0.")
        t0 = time.monotonic()
        assert refused_silently(silent, 15)
        assert refused_silently(partial, 15)
        took = time.monotonic() - t0
        assert 4 <= took < 12, took                     # 5 s
        wait_for_log(r, r"timeout waiting for the PROXY header from \[127\.0\.0\.1\]:\d+$", 2)


@test
def test_stop_while_a_header_is_awaited():
    ctx, port = proxied_listener()
    with ctx as r:
        c = Client(port)
        c.send(b"\r\n\r\n\x00\r")
        time.sleep(0.3)
        t0 = time.monotonic()
        assert r.stop(signal.SIGTERM) == 0             # no leak, no wait for the header
        assert time.monotonic() - t0 < 4
        assert refused_silently(c, 2)


@test
def test_auth_failure_is_charged_to_the_claimed_address():
    port = free_port()
    with auth_running(extra="listen 127.0.0.1:%d proxy\n" % port) as r:
        c = Client(port)
        c.send(v1("203.0.113.7", 40030))
        c.hello()
        starttls(c)
        c.cmd("EHLO client.test", 250)
        wrong = base64.b64encode(b"\0bob\0wrong").decode()
        c.cmd("AUTH PLAIN " + wrong, 535, "5.7.8")
        c.cmd("QUIT", 221)
        log = r.log_text()
        assert "authentication failed from [203.0.113.7]:40030" in log, log
        assert "TLS from [203.0.113.7]:40030" in log, log


if __name__ == "__main__":
    run()
