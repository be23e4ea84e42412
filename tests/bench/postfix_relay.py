"""
postfix_relay — the relay a user would pick instead of relayd: a throwaway
Postfix instance (its own config, queue and data directories, its own log
file) with an smtpd on a loopback port for mynetworks = 127.0.0.0/8 and
relayhost = the sink. Everything else is Postfix's default, fsync included
(Postfix has no switch to turn it off): cleanup fsyncs each queue file before
smtpd answers 250, as relayd commits before its 250. Its queue lives in the
benchmark's work directory, on the same file system as relayd's.

`postfix -c DIR` wants DIR listed in /etc/postfix/main.cf's
alternate_config_directories: tests/integration/postfix_main_cf.py adds the
entry, as for the integration tests, and removes it at the end.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import procs
from postfix_main_cf import postconf, register, unregister

MARK = "# created by relayd's tests/bench/postfix_relay.py\n"


def version():
    return postconf("-d", "-h", "mail_version").strip()


class Postfix:
    name = "Postfix"

    def __init__(self, dir, port, sink_port):
        self.dir = dir
        self.port = port
        self.conf = os.path.join(dir, "etc")
        self.queue = os.path.join(dir, "queue")
        self.data = os.path.join(dir, "data")
        self.maillog = os.path.join(dir, "maillog")
        self.master = None
        self.registered = False
        self.peak = self.peak_pss = 0
        for d in (dir, self.conf, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)            # its unprivileged daemons must traverse them
        shutil.chown(self.data, "postfix", "postfix")
        shutil.copy("/usr/share/postfix/master.cf.dist", os.path.join(self.conf, "master.cf"))
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": dir,
            "myhostname": "postfix.bench",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "[127.0.0.1]:%d" % sink_port,
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
        }
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))
        # Its smtpd on our port instead of port 25; no chroot (it would need a copy of
        # /etc files inside the queue directory).
        postconf("-c", self.conf, "-MX", "smtp/inet")
        postconf("-c", self.conf, "-M", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd"
                 % (port, port))
        postconf("-c", self.conf, "-F", "*/*/chroot = n")

    def start(self):
        if not self.registered:
            register(self.conf, MARK)
            procs.on_cleanup(self._unregister)
            procs.on_cleanup(self.stop)
            self.registered = True
        r = subprocess.run(["postfix", "-c", self.conf, "start"], capture_output=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError("postfix start: %s%s\n%s" % (
                r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"),
                self.log_tail()))
        self.master = procs.wait_until(self._master_pid, 30, what="Postfix's master")
        procs.wait_until(self._greets, 60, step=0.05, what="Postfix's 220 greeting")
        return self

    def _master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().strip())
            return pid if procs.alive(pid) else None
        except (OSError, ValueError):
            return None

    def _greets(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.settimeout(10)
                return s.recv(512).startswith(b"220 ")
        except OSError:
            return False

    def pids(self):
        """The master and its children (smtpd, cleanup, qmgr, smtp, trivial-rewrite, …):
        from /proc/PID/task/*/children, or, on a kernel without it, every process whose
        environment names this instance's config directory (Postfix passes it on)."""
        if not self.master or not procs.alive(self.master):
            return []
        kids = procs.children(self.master)
        if not kids:            # a running master always has qmgr and pickup
            mark = ("MAIL_CONFIG=%s" % self.conf).encode()
            for p in os.listdir("/proc"):
                try:
                    with open("/proc/%s/environ" % p, "rb") as f:
                        if p.isdigit() and int(p) != self.master and \
                                mark in f.read().split(b"\0"):
                            kids.append(int(p))
                except (OSError, ValueError):
                    pass
        return [self.master] + kids

    def cpu(self):
        """Every process's own time, plus the master's reaped children: a process that
        ended since the last look is counted in its parent, the master."""
        return sum(procs.cpu_seconds(p) for p in self.pids())

    def rss_kb(self):
        return sum(procs.status_kb(p, "VmRSS") for p in self.pids())

    def reset_peak(self):
        self.peak = self.rss_kb()
        self.peak_pss = self.pss_kb()

    def sample_peak(self, pss=False):
        """Processes come and go (smtpd ends after 100 sessions): the peak of their sum
        is sampled, and a sample can only miss it, never overstate it. The sum of RSS
        counts the shared libraries once per process; the sum of PSS splits them."""
        self.peak = max(self.peak, self.rss_kb())
        if pss:
            self.peak_pss = max(self.peak_pss, self.pss_kb())

    def peak_kb(self):
        return self.peak

    def pss_kb(self):
        return sum(procs.pss_kb(p) for p in self.pids())

    def counters(self):
        return {}

    def notes(self, before, n):
        return {}

    def queue_count(self):
        """Queue files not yet delivered (incoming, active, deferred, hold, maildrop)."""
        n = 0
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.queue, sub)):
                n += len(files)
        return n

    def log_tail(self, n=3000):
        try:
            with open(self.maillog, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM to the master (what `postfix stop` does), which stops its children;
        whatever is left after a bounded wait is killed by its pid."""
        if not self.master:
            return
        left = self.pids()
        procs.kill_pid(self.master, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(procs.alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in left:
            if procs.alive(p):
                procs.kill_pid(p)
        self.master = None

    def _unregister(self):
        unregister(self.conf)
