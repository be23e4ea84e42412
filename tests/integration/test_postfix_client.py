"""
test_postfix_client — relayd as the relayhost of a real Postfix: a throwaway
Postfix instance (own config, queue and data directories, log file, no port 25)
hands its mail to relayd, and Postfix's own log shows relayd's answers —
"250 2.0.0 Ok: queued as ID" when relayed, "554 5.7.1" when relaying is denied.
"""
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile

from harness import running, run, test, wait_for

DEFAULT_MAIN_CF = "/etc/postfix/main.cf"
# Under /tmp, not $TMPDIR: every parent of Postfix's directories must be traversable by
# its unprivileged daemons (a TMPDIR under /root, 0700, is not).
TMP = "/tmp"
PREFIX = "relayd-postfix-"


def postconf(*args):
    r = subprocess.run(["postconf"] + list(args), capture_output=True, timeout=30)
    assert r.returncode == 0, "postconf %s: %s" % (args, r.stderr.decode(errors="replace"))
    return r.stdout.decode(errors="replace")


def _alternate_dirs():
    value = postconf("-c", os.path.dirname(DEFAULT_MAIN_CF), "-h",
                     "alternate_config_directories").strip()
    return [d for d in re.split(r"[\s,]+", value) if d]


def _set_alternate_dirs(dirs):
    postconf("-c", os.path.dirname(DEFAULT_MAIN_CF), "-e",
             "alternate_config_directories = " + ", ".join(dirs))


MARK = "# created by relayd's tests/integration/test_postfix_client.py\n"


class _main_cf_lock:
    """Runs of this file in parallel edit the same /etc/postfix/main.cf: one at a time
    (a lock on the directory itself, so no lock file is left behind)."""

    def __enter__(self):
        self.fd = os.open(os.path.dirname(DEFAULT_MAIN_CF), os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        os.close(self.fd)                         # releases the lock
        return False


def _register(confdir):
    """`postfix -c DIR` only accepts a DIR listed in the default main.cf: list it once,
    and drop entries of earlier runs whose directory is gone. A fresh Debian has no
    main.cf at all ("No configuration"): then create one, marked as ours."""
    with _main_cf_lock():
        if not os.path.exists(DEFAULT_MAIN_CF):
            with open(DEFAULT_MAIN_CF, "w") as f:
                f.write(MARK)
        dirs = [d for d in _alternate_dirs()
                if not (d.startswith(os.path.join(TMP, PREFIX)) and not os.path.isdir(d))]
        if confdir not in dirs:
            dirs.append(confdir)
        _set_alternate_dirs(dirs)


def _unregister(confdir):
    """Take DIR off the list again; remove main.cf when it is ours and lists nothing more."""
    with _main_cf_lock():
        dirs = [d for d in _alternate_dirs() if d != confdir]
        if not dirs:
            with open(DEFAULT_MAIN_CF) as f:
                lines = f.readlines()
            if lines and lines[0] == MARK and all(
                    l.startswith("alternate_config_directories") for l in lines[1:]):
                os.unlink(DEFAULT_MAIN_CF)
                return
        _set_alternate_dirs(dirs)


class Postfix:
    """A Postfix instance of its own whose relayhost is relayd on 127.0.0.1:PORT."""

    def __init__(self, relay_port, extra=None):
        self.base = tempfile.mkdtemp(prefix=PREFIX, dir=TMP)
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
        settings.update(extra or {})
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))
        # No smtpd listener at all: this instance only submits (sendmail) and relays out,
        # so it can never bind port 25 or collide with another MTA.
        postconf("-c", self.conf, "-MX", "smtp/inet")
        postconf("-c", self.conf, "-F", "*/*/chroot = n")
        self.registered = False
        self.started = False

    def run(self, *args, timeout=60):
        return subprocess.run(list(args), capture_output=True, timeout=timeout)

    def start(self):
        _register(self.conf)
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
                _unregister(self.conf)
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


if __name__ == "__main__":
    run()
