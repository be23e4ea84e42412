"""
dnsfix — a DNS server for tests: dnsmasq (Debian dnsmasq-base) on a free
loopback port, serving only the records a test gives, authoritative for the
.test zone (a name it does not know is NXDOMAIN, never asked upstream).

    with Dns(mx=[("example.test", "mx1.example.test", 10)],
             hosts=[("mx1.example.test", "127.0.0.1")]) as dns:
        ... relayd.conf: resolver 127.0.0.1:<dns.port> ...

Stopped by its pid when the block ends.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time

DNSMASQ = "/usr/sbin/dnsmasq"


def _free_udp_and_tcp_port():
    for _ in range(50):
        with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for dnsmasq")


class Dns:
    def __init__(self, mx=(), hosts=(), null_mx=(), txt=(), ptr=(), zone="test"):
        """mx: (domain, host, preference); hosts: (name, address); null_mx: domains
        that publish "MX 0 ." (RFC 7505); txt: (name, text); ptr: (address, name)."""
        self.port = _free_udp_and_tcp_port()
        self.dir = tempfile.mkdtemp(prefix="dns-test-")
        args = [DNSMASQ, "--keep-in-foreground", "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                "--no-hosts", "--conf-file=/dev/null", "--local=/%s/" % zone,
                "--local=/in-addr.arpa/",
                "--pid-file=%s" % os.path.join(self.dir, "pid"), "--log-facility=-",
                "--user=%s" % ("root" if os.geteuid() == 0 else os.environ.get("USER", ""))]
        for domain, host, pref in mx:
            args.append("--mx-host=%s,%s,%d" % (domain, host, pref))
        for name, addr in hosts:
            args.append("--host-record=%s,%s" % (name, addr))
        for name, text in txt:      # one string: no commas (dnsmasq splits strings there)
            assert "," not in text, text
            args.append("--txt-record=%s,%s" % (name, text))
        for addr, name in ptr:
            rev = ".".join(reversed(addr.split("."))) + ".in-addr.arpa"
            args.append("--ptr-record=%s,%s" % (rev, name))
        for domain in null_mx:
            # MX RDATA: preference 0, then the root name (one zero byte).
            args.append("--dns-rr=%s,15,000000" % domain)
        self.args = args
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "dnsmasq.log"), "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dnsmasq exited: %s" % self.log_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("dnsmasq did not listen: %s" % self.log_text())

    def log_text(self):
        with open(os.path.join(self.dir, "dnsmasq.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc:
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
