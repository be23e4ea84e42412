"""
machine — what the numbers were measured on: CPU, cores, memory, kernel,
Debian, the disk and file system under the queues (and how many fdatasync
calls per second it does, measured now), relayd's git revision, Postfix's
version, and the load while the benchmark ran.
"""
import os
import platform
import re
import subprocess
import time


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _run(*args):
    try:
        r = subprocess.run(list(args), capture_output=True, timeout=30)
        return r.stdout.decode(errors="replace").strip() if r.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpu_model():
    m = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    return m.group(1).strip() if m else platform.machine()


def memory_gib():
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.M)
    return int(m.group(1)) / 1024 / 1024 if m else 0


def debian():
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', _read("/etc/os-release"), re.M)
    return "%s (debian_version %s)" % (pretty.group(1) if pretty else "?",
                                       _read("/etc/debian_version", "?"))


def mount_of(path):
    """(mount point, file system type, source, options) of the file system holding path."""
    path = os.path.realpath(path)
    best = ("/", "?", "?", "")
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        point = f[4].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, r[0], r[1], f[5])
    return best


def disk_of(source):
    """The block device's name, model and whether it spins, when /sys knows them."""
    dev = os.path.basename(source)
    for name in (dev, re.sub(r"p?\d+$", "", dev)):
        sysdir = "/sys/block/%s" % name
        if os.path.isdir(sysdir):
            model = _read(sysdir + "/device/model") or _read(sysdir + "/device/vendor")
            rot = _read(sysdir + "/queue/rotational")
            kind = {"0": "not rotational", "1": "rotational"}.get(rot, "")
            return ", ".join(x for x in (name, model, kind) if x)
    return dev


def fdatasync_rate(dir, seconds=1.0):
    """4 KiB writes, each followed by fdatasync, for about a second: calls per second."""
    path = os.path.join(dir, "fdatasync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * 4096
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds and n < 1000000:
            os.pwrite(fd, block, (n % 256) * 4096)
            os.fdatasync(fd)
            n += 1
        return n / (time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def git_revision(root):
    rev = _run("git", "-C", root, "rev-parse", "--short=12", "HEAD")
    if not rev:
        return "unknown (not a git checkout)"
    # The results file itself does not make the tree dirty: make bench rewrites it.
    dirty = _run("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--",
                 ".", ":!tests/bench/RESULTS.md")
    subject = _run("git", "-C", root, "log", "-1", "--format=%s")
    return "%s%s (%s)" % (rev, " with local changes" if dirty else "", subject)


def describe(root, workdir, postfix_version):
    point, fstype, source, options = mount_of(workdir)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": "%.1f GiB" % memory_gib(),
        "kernel": platform.release(),
        "debian": debian(),
        "filesystem": "%s on %s (%s, mounted at %s, %s)" % (
            fstype, source, disk_of(source), point, options),
        "fstype": fstype,
        "fdatasync_per_second": fdatasync_rate(workdir),
        "relayd": git_revision(root),
        "postfix": postfix_version,
        "load_before": _read("/proc/loadavg").split()[:3],
    }


def loadavg():
    return _read("/proc/loadavg").split()[:3]
