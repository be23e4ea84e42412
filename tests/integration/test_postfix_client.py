"""
test_postfix_client — relayd as the relayhost of a real Postfix: a throwaway
Postfix instance (own config, queue and data directories, log file, no port 25)
hands its mail to relayd, and Postfix's own log shows relayd's answers —
"250 2.0.0 Ok: queued as ID" when relayed, "554 5.7.1" when relaying is denied.
Configured the way mailcow configures a relay host ([relay.test]:PORT, SASL
PLAIN/LOGIN from a password map, TLS level "secure" against the test CA), it
relays only because it logs in, and a wrong password leaves nothing in relayd.
"""
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

from harness import auth_running, certs, running, run, test, wait_for
from postfix_main_cf import postconf, register, unregister

# Under /tmp, not $TMPDIR: every parent of Postfix's directories must be traversable by
# its unprivileged daemons (a TMPDIR under /root, 0700, is not).
TMP = "/tmp"
PREFIX = "relayd-postfix-"
MARK = "# created by relayd's tests/integration/test_postfix_client.py\n"


HOSTS = "/etc/hosts"
RELAY_NAME = "relay.test"          # relayd's hostname in the tests, in its certificate
HOSTS_MARK = "# added by relayd's tests/integration/test_postfix_client.py"


def _hosts_addrs(text, name):
    """The addresses /etc/hosts lines give NAME (comments and aliases understood)."""
    addrs = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name in (f.lower() for f in fields[1:]):
            addrs.append(fields[0])
    return addrs


def ensure_relay_test_resolves():
    """relay.test must resolve to 127.0.0.1 for Postfix (smtp_host_lookup = native, i.e.
    getaddrinfo and /etc/hosts), so that it connects to relayd and can check relayd's
    certificate against the name. Append one marked line when no line names it; never
    rewrite the file (other lines are not ours, and in containers /etc/hosts is often a
    bind mount that cannot be replaced by a rename). The line is left in place: parallel
    runs rely on it without knowing who added it, and it is harmless and idempotent."""
    with open(HOSTS, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)           # parallel runs: one checks-and-appends at a time
        try:
            text = f.read()
            addrs = _hosts_addrs(text, RELAY_NAME)
            if not addrs:
                f.seek(0, os.SEEK_END)
                f.write(("" if text.endswith("\n") or not text else "\n") +
                        "127.0.0.1 %s %s\n" % (RELAY_NAME, HOSTS_MARK))
                f.flush()
            else:
                assert addrs[0] == "127.0.0.1", \
                    "%s maps %s to %s, not 127.0.0.1: fix it by hand" % (HOSTS, RELAY_NAME, addrs)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    got = {a[4][0] for a in socket.getaddrinfo(RELAY_NAME, 25, socket.AF_INET)}
    assert got == {"127.0.0.1"}, "%s resolves to %s" % (RELAY_NAME, got)


def mailcow_relayhost(relay_port, user, password, conf):
    """The relayhost settings mailcow writes for a provider (its Postfix main.cf and
    sasl_passwd), with the test CA, relay.test from /etc/hosts and no DNS."""
    dest = "[%s]:%d" % (RELAY_NAME, relay_port)
    path = os.path.join(conf, "sasl_passwd")
    # texthash: read as it is, no postmap. Opened by smtp(8) as root before it drops
    # privileges, so 0600 root is enough (and right, it holds a password).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("%s %s:%s\n" % (dest, user, password))
    return {
        "relayhost": dest,
        "smtp_sasl_auth_enable": "yes",
        "smtp_sasl_password_maps": "texthash:" + path,
        "smtp_sasl_security_options": "noanonymous",
        "smtp_sasl_mechanism_filter": "plain, login",
        "smtp_sasl_auth_soft_bounce": "no",
        "smtp_tls_security_level": "secure",
        "smtp_tls_CAfile": certs()["ca"],
        "smtp_tls_loglevel": "1",             # logs "Verified TLS connection established"
        "smtp_host_lookup": "native",
        "smtp_dns_support_level": "disabled",
    }


class Postfix:
    """A Postfix instance of its own whose relayhost is relayd on 127.0.0.1:PORT — or,
    with sasl=(USER, PASSWORD), on [relay.test]:PORT the way mailcow sets it up."""

    def __init__(self, relay_port, extra=None, sasl=None):
        self.registered = False
        self.started = False
        self.base = tempfile.mkdtemp(prefix=PREFIX, dir=TMP)
        try:
            self._configure(relay_port, extra, sasl)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def _configure(self, relay_port, extra, sasl):
        os.chmod(self.base, 0o755)               # unprivileged daemons must traverse it
        self.conf = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "queue")
        self.data = os.path.join(self.base, "data")
        self.maillog = os.path.join(self.base, "maillog")
        for d in (self.conf, self.queue, self.data):
            os.mkdir(d)
            os.chmod(d, 0o755)
        shutil.chown(self.data, "postfix", "postfix")
        shutil.copy("/usr/share/postfix/master.cf.dist", os.path.join(self.conf, "master.cf"))
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.base,
            "myhostname": "postfix.test",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "relayhost": "[127.0.0.1]:%d" % relay_port,
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtp_tls_security_level": "none",
        }
        if sasl:
            settings.update(mailcow_relayhost(relay_port, sasl[0], sasl[1], self.conf))
        settings.update(extra or {})
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))
        # No smtpd listener at all: this instance only submits (sendmail) and relays out,
        # so it can never bind port 25 or collide with another MTA.
        postconf("-c", self.conf, "-MX", "smtp/inet")
        postconf("-c", self.conf, "-F", "*/*/chroot = n")

    def run(self, *args, timeout=60):
        return subprocess.run(list(args), capture_output=True, timeout=timeout)

    def start(self):
        register(self.conf, MARK)
        self.registered = True
        r = self.run("postfix", "-c", self.conf, "start")
        assert r.returncode == 0, "postfix start: %s%s\n%s" % (
            r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"), self.log())
        self.started = True
        self.wait(lambda: self.master_pid() and os.path.exists("/proc/%d" % self.master_pid()),
                  20, "postfix master")
        return self

    def master_pid(self):
        for path in (os.path.join(self.queue, "pid", "master.pid"),
                     os.path.join(self.data, "master.lock")):
            try:
                with open(path) as f:
                    text = f.read().strip()
                if text.isdigit():
                    return int(text)
            except OSError:
                pass
        return None

    def pids(self):
        """Every live process of this instance: Postfix hands MAIL_CONFIG to its children."""
        mark = ("MAIL_CONFIG=%s" % self.conf).encode()
        found = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % p, "rb") as f:
                    if mark in f.read().split(b"\0"):
                        found.append(int(p))
            except OSError:
                pass
        master = self.master_pid()
        if master and os.path.exists("/proc/%d" % master) and master not in found:
            found.append(master)
        return found

    def stop(self):
        try:
            if self.started:
                master = self.master_pid()
                r = self.run("postfix", "-c", self.conf, "stop", timeout=60)
                if r.returncode != 0 and master:
                    try:
                        os.kill(master, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    wait_for(lambda: not self.pids(), 20, step=0.2, what="postfix to exit")
                except AssertionError:
                    for pid in self.pids():
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    wait_for(lambda: not self.pids(), 10, step=0.2, what="postfix to die")
                self.started = False
        finally:
            if self.registered:
                unregister(self.conf)
                self.registered = False
            shutil.rmtree(self.base, ignore_errors=True)

    def sendmail(self, sender, rcpts, message):
        r = subprocess.run(["sendmail", "-C", self.conf, "-f", sender] + list(rcpts),
                           input=message.encode(), capture_output=True, timeout=60)
        assert r.returncode == 0, "sendmail: %s" % r.stderr.decode(errors="replace")

    def log(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, cond, timeout, what):
        """wait_for, with Postfix's log as it is at the timeout in the failure."""
        try:
            return wait_for(cond, timeout, step=0.5, what=what)
        except AssertionError as e:
            raise AssertionError("%s\n--- postfix maillog ---\n%s" % (e, self.log())) from None

    def queue_empty(self):
        r = self.run("postqueue", "-c", self.conf, "-p")
        return r.returncode == 0 and b"Mail queue is empty" in r.stdout


class postfix_instance:
    """with postfix_instance(relay_port) as pf: — started, and always stopped and removed."""

    def __init__(self, relay_port, **kw):
        self.pf = Postfix(relay_port, **kw)

    def __enter__(self):
        try:
            return self.pf.start()
        except BaseException:
            self.pf.stop()
            raise

    def __exit__(self, *exc):
        self.pf.stop()
        return False


def need_root():
    """Postfix is started, and /etc/postfix/main.cf edited, as root only (as in CI)."""
    if os.geteuid() != 0:
        print("  (not root: cannot run a Postfix instance)")
        return False
    return True


def message(n):
    return ("From: sender@example.com\n"
            "To: rcpt@example.org\n"
            "Subject: via postfix %d\n"
            "\n"
            "message number %d\n" % (n, n))


@test
def test_postfix_relayhost_delivers_into_relayd():
    if not need_root():
        return
    with running() as r:
        with postfix_instance(r.port) as pf:
            for n in range(5):
                pf.sendmail("sender@example.com", ["rcpt@example.org"], message(n))
            pf.sendmail("sender@example.com",
                        ["r1@example.org", "r2@example.org", "r3@example.org"], message(5))
            pf.wait(lambda: len(r.queued_ids()) >= 6, 60, "6 messages in relayd's queue")
            # Postfix writes "status=sent" after relayd's 250: wait for all 8 recipients.
            sent = re.compile(r"to=<([^>]+)>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*"
                              r"status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-F]{12})\)"
                              % r.port)
            pf.wait(lambda: len(sent.findall(pf.log())) >= 8, 60, "8 status=sent lines")
            pf.wait(pf.queue_empty, 30, "postfix queue to drain")
            ids = r.queued_ids()
            assert len(ids) == 6, ids
            lines = sent.findall(pf.log())
            assert len(lines) == 8, pf.log()
            assert {qid for _, qid in lines} == set(ids), (lines, ids)
            by_rcpt = dict(lines)
            multi = by_rcpt["r1@example.org"]
            assert by_rcpt["r2@example.org"] == by_rcpt["r3@example.org"] == multi, lines
            head, body = r.body(multi)
            assert "sender: <sender@example.com>" in head, head
            assert "client: 127.0.0.1\nhelo: postfix.test\n" in head, head
            assert re.search(r"^.*%s: client=\[127\.0\.0\.1\]:\d+, helo=<postfix\.test>, "
                             r"from=<sender@example\.com>, .*nrcpt=3" % multi,
                             r.log_text(), re.M), r.log_text()[-2000:]
            for rc in ("r1", "r2", "r3"):
                assert "rcpt: <%s@example.org>" % rc in head, head
            assert b"Subject: via postfix 5\r\n" in body, body[:2000]
            single = [qid for rcpt, qid in lines if rcpt == "rcpt@example.org"][0]
            head, body = r.body(single)
            text = body.decode(errors="replace")
            assert re.search(r"^Subject: via postfix [0-4]\r$", text, re.M), text[:2000]
            m = re.search(r"^Received: from postfix\.test \(\[127\.0\.0\.1\]\)\r\n"
                          r"\tby relay\.test \(relayd\) with ESMTP id %s\r\n" % single, text, re.M)
            assert m, text[:2000]
            # relayd's line comes first, above Postfix's own Received: line.
            assert text.index("by relay.test (relayd)") < text.index("by postfix.test"), text[:2000]


@test
def test_postfix_sees_relay_denied():
    if not need_root():
        return
    with running(allow="10.0.0.0/8") as r:
        with postfix_instance(r.port) as pf:
            pf.sendmail("sender@example.com", ["victim@example.org"], message(0))
            bounced = re.compile(r"to=<victim@example\.org>, relay=127\.0\.0\.1\[127\.0\.0\.1\]"
                                 r":%d, .*status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] "
                                 r"said: 554 5\.7\.1 <victim@example\.org>: Relay access denied"
                                 % r.port)
            pf.wait(lambda: bounced.search(pf.log()), 60, "status=bounced with 554 5.7.1")
            # The bounce to sender@example.com goes to relayd too, and is refused as well.
            pf.wait(pf.queue_empty, 60, "postfix queue to drain")
            assert r.queued_ids() == []
            assert "Relay access denied" in r.log_text()


PASSWORD = "Relay-pass.42"


def sasl_relayd():
    return auth_running(password=PASSWORD)


@test
def test_postfix_relays_with_sasl_over_verified_tls():
    if not need_root():
        return
    ensure_relay_test_resolves()
    with sasl_relayd() as r:
        with postfix_instance(r.port, sasl=("bob", PASSWORD)) as pf:
            for n in range(3):
                pf.sendmail("sender@example.com", ["rcpt@example.org"], message(n))
            pf.sendmail("sender@example.com", ["r1@example.org", "r2@example.org"], message(3))
            pf.wait(lambda: len(r.queued_ids()) >= 4, 60, "4 messages in relayd's queue")
            sent = re.compile(r"to=<([^>]+)>, relay=relay\.test\[127\.0\.0\.1\]:%d, .*"
                              r"status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-F]{12})\)"
                              % r.port)
            pf.wait(lambda: len(sent.findall(pf.log())) >= 5, 60, "5 status=sent lines")
            pf.wait(pf.queue_empty, 30, "postfix queue to drain")
            log = pf.log()
            ids = r.queued_ids()
            assert len(ids) == 4, ids
            lines = sent.findall(log)
            assert len(lines) == 5, log
            assert {qid for _, qid in lines} == set(ids), (lines, ids)
            # smtp_tls_security_level = secure: the chain checked against the test CA and the
            # name relay.test against the certificate, or Postfix would not have sent at all.
            assert re.search(r"Verified TLS connection established to relay\.test"
                             r"\[127\.0\.0\.1\]:%d: TLSv1\.[23] " % r.port, log), log
            assert "SASL authentication failed" not in log, log
            rlog = r.log_text()
            assert re.search(r"TLS from \[127\.0\.0\.1\]:\d+: TLSv1\.[23]", rlog), rlog
            # mailcow filters to "plain, login"; Cyrus's client picks one of the two. Postfix
            # logs in as "bob"; relayd logs Cyrus's canonical name, with the realm (as Postfix's
            # own smtpd does).
            assert re.search(r"login: method=(PLAIN|LOGIN), sasl_username=bob@relay\.test$",
                             rlog, re.M), rlog
            for qid in ids:
                assert re.search(r"^.*%s: client=\[127\.0\.0\.1\]:\d+, "
                                 r"sasl_username=bob@relay\.test, "
                                 r"helo=<postfix\.test>, from=<sender@example\.com>, "
                                 % qid, rlog, re.M), rlog
                head, body = r.body(qid)
                text = body.decode(errors="replace")
                m = re.search(r"^Received: from postfix\.test \(\[127\.0\.0\.1\]\)\r\n"
                              r"\t\(using TLSv1\.[23] [^\r]*\)\r\n"
                              r"\tby relay\.test \(relayd\) with ESMTPSA id %s\b" % qid,
                              text, re.M)
                assert m, text[:2000]
                assert text.index("by relay.test (relayd)") < text.index("by postfix.test")
            assert "Relay access denied" not in rlog and "5.7.0" not in rlog, rlog
            _, out, _ = r.relayctl("show", ids[0])
            assert "\nsasl_username: bob@relay.test\n" in out, out


def wrong_password_run(soft_bounce):
    """mailcow's relayhost settings with a wrong password; returns (postfix log,
    postqueue -p output, relayd log) once Postfix has tried the 535 5.7.8 answer."""
    ensure_relay_test_resolves()
    wrong = "not-" + PASSWORD
    with sasl_relayd() as r:
        with postfix_instance(r.port, sasl=("bob", wrong),
                              extra={"smtp_sasl_auth_soft_bounce": soft_bounce}) as pf:
            pf.sendmail("sender@example.com", ["victim@example.org"], message(0))
            failed = re.compile(r"to=<victim@example\.org>, relay=relay\.test\[127\.0\.0\.1\]"
                                r":%d, .*status=\w+ \(SASL authentication failed; server "
                                r"relay\.test\[127\.0\.0\.1\] said: 535 5\.7\.8 " % r.port)
            pf.wait(lambda: failed.search(pf.log()), 60, "SASL authentication failed, 535")
            if soft_bounce == "no":
                # The bounce notice to sender@example.com goes to relayd too, fails the same
                # way and is dropped (a failed bounce of a bounce): then the queue is empty.
                pf.wait(pf.queue_empty, 60, "postfix queue to drain")
            queue = pf.run("postqueue", "-c", pf.conf, "-p").stdout.decode(errors="replace")
            assert r.queued_ids() == [], r.queued_ids()
            rlog = r.log_text()
            assert re.search(r"authentication failed from \[127\.0\.0\.1\]:\d+: "
                             r"mechanism=(PLAIN|LOGIN)", rlog), rlog
            assert wrong not in rlog, rlog                # never the password
            assert "sasl_username" not in rlog and "client=" not in rlog, rlog
            return pf.log(), queue, rlog


@test
def test_postfix_with_wrong_password_bounces():
    """With mailcow's smtp_sasl_auth_soft_bounce = no, Postfix does NOT defer on a 535: it
    keeps relayd's 5.7.8 as a permanent error and bounces the mail at once (status=bounced,
    dsn=5.7.8, a non-delivery notice to the sender). That is why relayd must answer 454
    4.7.0, never 535, when only its backend is down (test_auth's
    test_backend_failure_is_454_not_535): a 535 is final for such a client."""
    if not need_root():
        return
    log, queue, _ = wrong_password_run("no")
    assert re.search(r"to=<victim@example\.org>, .*dsn=5\.7\.8, status=bounced \(SASL "
                     r"authentication failed; server relay\.test\[127\.0\.0\.1\] said: "
                     r"535 5\.7\.8 ", log), log
    assert "sender non-delivery notification" in log, log
    assert "status=deferred" not in log and "status=sent" not in log, log
    assert "Mail queue is empty" in queue, queue


@test
def test_postfix_with_wrong_password_and_soft_bounce_defers():
    """Postfix's default, smtp_sasl_auth_soft_bounce = yes, turns the same 535 into a
    deferral (dsn=4.7.8): the mail stays in Postfix's queue for a retry, relayd has none."""
    if not need_root():
        return
    log, queue, _ = wrong_password_run("yes")
    assert re.search(r"to=<victim@example\.org>, .*dsn=4\.7\.8, status=deferred \(SASL "
                     r"authentication failed; server relay\.test\[127\.0\.0\.1\] said: "
                     r"535 5\.7\.8 ", log), log
    assert "status=bounced" not in log and "status=sent" not in log, log
    assert "victim@example.org" in queue and "SASL authentication failed" in queue, queue


@test
def test_postfix_without_login_gets_530():
    """The unauthenticated stranger, as a real MTA: mailcow's settings over verified TLS, but
    no SASL. AUTH is on offer, so relayd refuses the recipient with 530 5.7.0."""
    if not need_root():
        return
    ensure_relay_test_resolves()
    with sasl_relayd() as r:
        with postfix_instance(r.port, sasl=("bob", PASSWORD),
                              extra={"smtp_sasl_auth_enable": "no"}) as pf:
            pf.sendmail("sender@example.com", ["victim@example.org"], message(0))
            bounced = re.compile(r"to=<victim@example\.org>, relay=relay\.test\[127\.0\.0\.1\]"
                                 r":%d, .*status=bounced \(host relay\.test\[127\.0\.0\.1\] "
                                 r"said: 530 5\.7\.0 " % r.port)
            pf.wait(lambda: bounced.search(pf.log()), 60, "status=bounced with 530 5.7.0")
            pf.wait(pf.queue_empty, 60, "postfix queue to drain")
            log = pf.log()
            assert "Verified TLS connection established to relay.test" in log, log
            assert r.queued_ids() == []
            rlog = r.log_text()
            assert "TLS from [127.0.0.1]" in rlog and "sasl_username" not in rlog, rlog


if __name__ == "__main__":
    run()
