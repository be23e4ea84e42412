"""
relayd_relay — build/relayd as a benchmark subject: its own directory, queue
and log file, a plain listener on a loopback port for 127.0.0.0/8, one
upstream (the sink) for every domain, and otherwise the defaults a user gets
(durability included: relayd has no switch to turn fsync off).
"""
import os
import re
import socket
import subprocess
import time

import procs


class Relayd:
    name = "relayd"

    def __init__(self, binary, dir, port, sink_port=None, extra="", nofile=None):
        self.binary = binary
        self.dir = dir
        self.port = port
        os.makedirs(dir, exist_ok=True)
        self.queue = os.path.join(dir, "queue")
        self.conf = os.path.join(dir, "relayd.conf")
        self.log = os.path.join(dir, "relayd.log")
        self.stderr = os.path.join(dir, "stderr")
        self.peak_pss = 0
        self.nofile = nofile
        lines = ["hostname relay.bench", "queue " + self.queue, "log " + self.log,
                 "listen 127.0.0.1:%d" % port, "allow 127.0.0.0/8"]
        if sink_port:
            lines += ["upstream sink {", "\thost 127.0.0.1", "\tport %d" % sink_port,
                      "\ttls none", "}", "route * sink"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        self.proc = None

    def start(self, timeout=120):
        """Start it; returns the seconds from exec to its first 220 greeting."""
        t0 = time.monotonic()
        self.proc = procs.spawn([self.binary, "-d", "-c", self.conf], log=self.stderr,
                                preexec_fn=procs.raise_nofile(self.nofile) if self.nofile
                                else None)
        procs.wait_until(self._greets, timeout, step=0.001, what="relayd's 220 greeting")
        return time.monotonic() - t0

    def _greets(self):
        if self.proc.poll() is not None:
            raise RuntimeError("relayd exited (%s): %s" % (self.proc.returncode,
                                                          tail(self.stderr) + tail(self.log)))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.settimeout(5)
                return s.recv(512).startswith(b"220 ")
        except OSError:
            return False

    def pids(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def cpu(self):
        return procs.cpu_seconds(self.proc.pid)

    def rss_kb(self):
        return procs.status_kb(self.proc.pid, "VmRSS")

    def reset_peak(self):
        procs.reset_hwm(self.proc.pid)
        self.peak_pss = self.pss_kb()

    def sample_peak(self, pss=False):
        """VmHWM is exact; PSS (shared pages split among their users) is sampled."""
        if pss:
            self.peak_pss = max(self.peak_pss, self.pss_kb())

    def peak_kb(self):
        return procs.status_kb(self.proc.pid, "VmHWM")

    def pss_kb(self):
        return procs.pss_kb(self.proc.pid)

    def rss_file_kb(self):
        """The file-backed part of its RSS: mostly the queue's pages, mapped by LMDB."""
        return procs.status_kb(self.proc.pid, "RssFile")

    def queue_count(self):
        """Messages in the queue, from the LMDB environment's own statistics (mdb_stat,
        read-only). Not from relayd's /metrics: an HTTP request to relayd just before
        an SMTP session can make that session lose its input (see RESULTS.md), and
        the benchmark must not measure that."""
        r = subprocess.run(["mdb_stat", "-s", "msg", self.queue], capture_output=True,
                           timeout=30)
        m = re.search(rb"Entries: (\d+)", r.stdout)
        if r.returncode != 0 or not m:
            raise RuntimeError("mdb_stat %s: %s" % (self.queue, r.stderr.decode()[-300:]))
        return int(m.group(1))

    def counters(self):
        return {}

    def notes(self, before, n):
        """How much of its RSS is the queue's map (file-backed pages, which the kernel
        can reclaim)."""
        return {"rss_file_kb": self.rss_file_kb()}

    def commit_stats(self):
        """(messages, transactions) from the line relayd logs when it stops; None before.
        Each message is written twice, accepted and sent: 2 * messages / transactions
        is how many queue writes shared one transaction, i.e. one fsync."""
        m = re.findall(r"queue: (\d+) messages committed in (\d+) transactions", tail(
            self.log, 4000))
        return tuple(int(x) for x in m[-1]) if m else None

    def relayctl(self, relayctl, *args, timeout=120):
        return subprocess.run([relayctl, "-c", self.conf] + list(args), capture_output=True,
                              timeout=timeout)

    def stop(self, timeout=60):
        """SIGTERM (a graceful stop); the seconds it took, None when it had to be killed."""
        if not self.proc or self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        rc = procs.stop(self.proc, timeout=timeout)
        return time.monotonic() - t0 if rc == 0 else None


def tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return ""
