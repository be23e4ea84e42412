"""
rawpeer — a raw, scripted upstream on 127.0.0.1 for the tests that need what
no real SMTP server will do: reply with hostile or garbled lines, inject a
reply before a TLS handshake, stall or reset in the middle of DATA — and
record every byte relayd sent, exactly as it came over the wire (before any
dot-unstuffing, which upstream.py's aiosmtpd does).

    def script(p):                      # runs in a thread, once per connection
        p.send(b"220 raw.test ESMTP\\r\\n")
        p.serve()                       # or anything else, byte by byte
    with RawUpstream(script) as u:
        ... relayd forwards to 127.0.0.1:u.port ...
        u.wait_messages(1)              # [(envelope, raw DATA bytes)]
        u.raw(0)                        # every byte connection 0 received

serve() is a plain, well-behaved SMTP server (EHLO, optional STARTTLS,
MAIL, RCPT, DATA, RSET, NOOP, QUIT) so a script can misbehave first and then
carry on normally.  Threads in this process, not processes: every socket and
thread is closed and joined by stop(); every wait is bounded.
"""
import re
import socket
import ssl
import struct
import threading
import time


class PeerGone(Exception):
    """The connection closed (or the upstream is stopping) while a script waited."""


class Peer:
    """One connection as the upstream sees it."""

    def __init__(self, upstream, sock, n):
        self.upstream = upstream
        self.sock = sock
        self.n = n
        self.buf = b""
        self.received = bytearray()     # every byte, in order, as received
        self.messages = []              # (envelope dict, raw DATA bytes)
        self.tls = False
        sock.settimeout(0.2)

    # --- bytes ------------------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        while True:
            if self.upstream.stopping.is_set():
                raise PeerGone("stopping")
            if time.monotonic() > deadline:
                raise PeerGone("timed out waiting for the client")
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError as e:
                raise PeerGone(repr(e))
            if not chunk:
                raise PeerGone("closed by relayd")
            self.received += chunk
            self.buf += chunk
            return

    def read_until(self, marker, timeout=30):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def line(self, timeout=30):
        """The next line, without its CRLF (a bare LF also ends it: we report, not judge)."""
        return self.read_until(b"\n", timeout).rstrip(b"\r\n").decode("utf-8", "replace")

    def read_some(self, count, timeout=30):
        """At least count more bytes (the body part a stalling upstream takes)."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < count:
            self._fill(deadline)
        out, self.buf = self.buf, b""
        return out

    def read_data(self, timeout=60):
        """DATA's bytes up to and including <CRLF>.<CRLF>, raw (still dot-stuffed)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf.startswith(b".\r\n"):
                i = 3
                break
            j = self.buf.find(b"\r\n.\r\n")
            if j >= 0:
                i = j + 5
                break
            self._fill(deadline)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def idle(self, seconds):
        """Read nothing for this long (or until the upstream stops)."""
        self.upstream.stopping.wait(seconds)

    def starttls(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        from harness import certs
        c = certs()
        ctx.load_cert_chain(c["cert"], c["key"])
        self.sock.settimeout(10)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(0.2)
        self.tls = True

    def reset(self):
        """Close with RST (SO_LINGER 0): what a crashed or firewalled peer looks like."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # --- a normal SMTP server -----------------------------------------------------------
    def ehlo_reply(self, starttls=False):
        lines = ["raw.test", "PIPELINING", "8BITMIME"] + (["STARTTLS"] if starttls else [])
        return "".join("250%s%s\r\n" % ("-" if i + 1 < len(lines) else " ", l)
                       for i, l in enumerate(lines))

    def serve(self, starttls=False, data_reply="250 2.0.0 Ok: queued", rcpt_reply=None):
        """Answer like a plain SMTP server until QUIT or the link goes; messages are kept.
        rcpt_reply(address) may return another reply (CRLFs included) for a recipient."""
        env = {"mail": None, "rcpts": []}
        try:
            while True:
                cmd = self.line()
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.send(self.ehlo_reply(starttls and not self.tls))
                elif verb == "STARTTLS" and starttls and not self.tls:
                    self.send(b"220 2.0.0 go ahead\r\n")
                    self.starttls()
                elif verb == "MAIL":
                    env = {"mail": cmd[10:], "rcpts": [], "tls": self.tls}
                    self.send(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    other = rcpt_reply(cmd[8:]) if rcpt_reply else None
                    if other:
                        self.send(other)
                        continue
                    env["rcpts"].append(cmd[8:])
                    self.send(b"250 2.1.5 Ok\r\n")
                elif verb == "DATA" and not env["rcpts"]:
                    self.send(b"554 5.5.1 Error: no valid recipients\r\n")
                elif verb == "DATA":
                    self.send(b"354 go ahead\r\n")
                    data = self.read_data()
                    self.messages.append((env, data))
                    self.send(data_reply + "\r\n")
                elif verb in ("RSET", "NOOP"):
                    self.send(b"250 2.0.0 Ok\r\n")
                elif verb == "QUIT":
                    self.send(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    self.send(b"502 5.5.2 what?\r\n")
        except PeerGone:
            return


class RawUpstream:
    """Listens on 127.0.0.1; script(peer) runs once per connection, in its own thread."""

    def __init__(self, script, rcvbuf=None):
        self.script = script
        self.stopping = threading.Event()
        self.peers = []
        self.errors = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:      # inherited by accepted sockets: a small window fills up fast
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                peer = Peer(self, sock, len(self.peers))
                self.peers.append(peer)
            t = threading.Thread(target=self._run, args=(peer,), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, peer):
        try:
            self.script(peer)
        except PeerGone:
            pass
        except Exception as e:          # a broken script must show, not hang the test
            self.errors.append("connection %d: %r" % (peer.n, e))
        finally:
            peer.close()

    def connections(self):
        with self.lock:
            return len(self.peers)

    def raw(self, n):
        with self.lock:
            return bytes(self.peers[n].received)

    def messages(self):
        with self.lock:
            return [m for p in self.peers for m in p.messages]

    def wait_messages(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.messages()) < count:
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %d messages (got %d): %s"
                                     % (count, len(self.messages()), self.errors))
            time.sleep(0.05)
        return self.messages()

    def wait_connections(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while self.connections() < count:
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %d connections (got %d)"
                                     % (count, self.connections()))
            time.sleep(0.05)

    def stop(self):
        self.stopping.set()
        self.listener.close()
        self.acceptor.join(10)
        with self.lock:
            peers = list(self.peers)
        for p in peers:
            p.close()
        for t in self.threads:
            t.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def bare_line_ends(data):
    """Offsets of every CR not followed by LF and every LF not preceded by CR."""
    return [m.start() for m in re.finditer(rb"\r(?!\n)|(?<!\r)\n", data)]


def raw_conf(port, tls="none", block="", extra=""):
    """An upstream block for a RawUpstream (block: more lines in it), route * to it,
    fast retries."""
    return ("upstream raw {\n host 127.0.0.1\n port %d\n tls %s\n%s}\nroute * raw\n"
            "retry_min 1s\nretry_max 2s\n%s" % (port, tls, block, extra))
