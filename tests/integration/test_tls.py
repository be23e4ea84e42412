"""
test_tls — STARTTLS (RFC 3207) and implicit TLS (RFC 8314) as mail servers and
admins' tools see them: swaks, openssl s_client, Python's ssl; TLS 1.2+ only;
plaintext pipelined behind STARTTLS is discarded; a failed handshake is logged;
relayd -n checks certificate and key.
"""
import os
import re
import socket
import ssl
import subprocess
import warnings

warnings.simplefilter("ignore", DeprecationWarning)   # TLS 1.1 is asked for on purpose

from harness import (RELAYD, Client, Relayd, certs, client_tls_context, free_port, running,
                     run, starttls, test, tls_conf, wait_for)

MSG = "Subject: tls\r\n\r\nsecret\r\n"


@test
def test_starttls_is_offered_and_works_with_swaks():
    with running(extra=tls_conf()) as r:
        c = Client(r.port)
        assert "STARTTLS" in c.hello().split("\n")
        c.cmd("QUIT", 221)
        out = subprocess.run(["swaks", "-s", "127.0.0.1:%d" % r.port, "--tls", "-f", "a@example.com",
                              "-t", "b@example.org", "--tls-verify", "--tls-ca-path", certs()["ca"],
                              "--tls-sni", "relay.test"],
                             capture_output=True, timeout=60)
        text = out.stdout.decode()
        assert out.returncode == 0, text
        qid = re.search(r"queued as ([0-9A-F]{12})", text).group(1)
        _, body = r.body(qid)
        head = body.split(b"\r\n\tby")[0].decode()
        assert re.search(r"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\)", head), head
        assert b"with ESMTPS id " + qid.encode() in body
        assert re.search(r"TLS from \[127\.0\.0\.1\]:\d+: TLSv1\.[23] with cipher", r.log_text())


@test
def test_session_ends_with_close_notify():
    """After 221, relayd ends TLS with close_notify: openssl s_client sees an orderly
    end ("closed", exit 0), not "unexpected eof while reading" (exit 1)."""
    with running(extra=tls_conf()) as r:
        p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                            "127.0.0.1:%d" % r.port, "-CAfile", certs()["ca"], "-ign_eof",
                            "-crlf"], input=b"EHLO client.test\nQUIT\n",
                           capture_output=True, timeout=30)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 0 and "unexpected eof" not in err, err[-500:]
        assert "221 " in p.stdout.decode(errors="replace")


@test
def test_no_starttls_without_certificate():
    with running() as r:
        c = Client(r.port)
        assert "STARTTLS" not in c.hello()
        c.cmd("STARTTLS", 502, "5.5.1")
        c.cmd("QUIT", 221)


@test
def test_implicit_tls_listener_with_swaks():
    port = free_port()
    with running(extra=tls_conf() + "listen 127.0.0.1:%d tls\n" % port) as r:
        out = subprocess.run(["swaks", "-s", "127.0.0.1:%d" % port, "--tlsc", "-f", "a@example.com",
                              "-t", "b@example.org"], capture_output=True, timeout=60)
        text = out.stdout.decode()
        assert out.returncode == 0, text
        assert "STARTTLS" not in text.split("EHLO", 1)[1]     # already encrypted: not offered
        assert len(r.queued_ids()) == 1


@test
def test_openssl_s_client_verifies_the_certificate():
    with running(extra=tls_conf()) as r:
        out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % r.port,
                              "-starttls", "smtp", "-CAfile", certs()["ca"],
                              "-verify_hostname", "relay.test", "-verify_return_error"],
                             input=b"QUIT\r\n", capture_output=True, timeout=60)
        text = out.stdout.decode()
        assert "Verify return code: 0 (ok)" in text, text + out.stderr.decode()
        assert re.search(r"Protocol\s*: TLSv1\.3", text) or "TLSv1.3" in text, text


@test
def test_plaintext_pipelined_after_starttls_is_discarded():
    with running(extra=tls_conf()) as r:
        c = Client(r.port)
        c.hello()
        c.send("STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\nRCPT TO:<victim@example.org>\r\n")
        c.expect(220)
        c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="relay.test")
        c.buf = b""
        c.cmd("RCPT TO:<b@example.org>", 503, "5.5.1")        # no EHLO yet: state reset
        c.cmd("EHLO client.test", 250)
        c.cmd("RCPT TO:<b@example.org>", 503, "5.5.1")        # the injected MAIL never happened
        qid = c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)
        assert re.search(r"discarded \d+ octets pipelined after STARTTLS", r.log_text())
        rc, out, _ = r.relayctl("show", qid)
        assert "injected" not in out


@test
def test_starttls_twice_and_state_after_tls():
    with running(extra=tls_conf()) as r:
        c = Client(r.port)
        c.hello()
        c.cmd("MAIL FROM:<a@example.com>", 250)
        c.cmd("STARTTLS", 503, "5.5.1")                       # not inside a transaction
        c.cmd("RSET", 250)
        starttls(c)
        text = c.cmd("EHLO client.test", 250)
        assert "STARTTLS" not in text
        c.cmd("STARTTLS", 503, "5.5.1")
        assert c.send_message("a@example.com", ["b@example.org"], MSG)
        c.cmd("QUIT", 221)


@test
def test_failed_handshake_is_logged():
    port = free_port()
    with running(extra=tls_conf() + "listen 127.0.0.1:%d tls\n" % port) as r:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"EHLO plaintext.example\r\n")
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        wait_for(lambda: "TLS handshake failed from [127.0.0.1]" in r.log_text(), what="log line")


@test
def test_sigterm_and_timeouts_during_a_stalled_handshake():
    """Clients that never finish a handshake must not hold a slot or the stop for ever."""
    port = free_port()
    extra = tls_conf() + "listen 127.0.0.1:%d tls\ntimeout_command 1s\ntimeout_idle 2s\n" % port
    with running(extra=extra) as r:
        # STARTTLS answered, then silence: the command deadline must still free it.
        c = Client(r.port)
        c.hello()
        c.send("STARTT")
        c.send("LS\r\n")
        c.expect(220)
        wait_for(lambda: r.log_text().count("disconnect from") >= 1, 10,
                 what="the stalled STARTTLS session to be freed")
        # Silent clients on the implicit TLS port, then SIGTERM: the stop finishes.
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        wait_for(lambda: r.log_text().count("connect from") >= 5, 10, what="connections")
        assert r.stop(timeout=10) == 0
        for s_ in silent:
            s_.close()
        c.close()


@test
def test_tls_below_1_2_is_refused():
    with running(extra=tls_conf()) as r:
        c = Client(r.port)
        c.hello()
        c.cmd("STARTTLS", 220)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            print("  (this OpenSSL cannot even offer TLS 1.1)")
            return
        try:
            ctx.wrap_socket(c.sock, server_hostname="relay.test")
            raise AssertionError("a TLS 1.1 handshake succeeded")
        except (ssl.SSLError, OSError):
            pass
        wait_for(lambda: "TLS handshake failed" in r.log_text(), what="log line")


@test
def test_config_check_reports_bad_key_and_cert():
    r = Relayd(extra=tls_conf())
    try:
        c = certs()
        ok = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        lines = open(r.conf).read().splitlines()
        key_line = next(i + 1 for i, l in enumerate(lines) if l.startswith("tls_key"))
        cert_line = next(i + 1 for i, l in enumerate(lines) if l.startswith("tls_cert"))
        def check(text, want):
            with open(r.conf, "w") as f:
                f.write(text)
            out = subprocess.run([RELAYD, "-n", "-c", r.conf], capture_output=True, timeout=30)
            assert out.returncode == 1, out
            assert want in out.stderr.decode(), (want, out.stderr)
        base = "\n".join(lines) + "\n"
        check(base.replace(c["key"], c["other_key"]),
              "%s:%d: tls_key %s: error:05800074:x509 certificate routines::key values mismatch"
              % (r.conf, key_line, c["other_key"]))
        check(base.replace(c["cert"], "/nonexistent/cert.pem"),
              "%s:%d: tls_cert /nonexistent/cert.pem" % (r.conf, cert_line))
        open_key = os.path.join(r.dir, "open.pem")
        with open(c["key"]) as src, open(open_key, "w") as dst:
            dst.write(src.read())
        os.chmod(open_key, 0o644)
        check(base.replace(c["key"], open_key),
              "%s:%d: tls_key %s: readable by everyone" % (r.conf, key_line, open_key))
    finally:
        r.cleanup()


if __name__ == "__main__":
    run()
