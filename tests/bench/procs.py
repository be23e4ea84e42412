"""
procs — the processes the benchmark starts, and what /proc says about them.
Every process is started in a session of its own (a Ctrl-C reaches only the
benchmark, which then stops them in order) and stopped by its pid: SIGTERM,
a bounded wait, then SIGKILL. Cleanup steps (a Postfix instance, a work
directory) are pushed as they are created and run in reverse order at the end,
also after an error or a signal.
"""
import os
import re
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

_procs = []          # every Popen we started, oldest first
_cleanups = []       # callables, run last-in first-out


def spawn(args, log=None, stdin=subprocess.DEVNULL, stdout=None, preexec_fn=None, env=None):
    """Start args; stdout and stderr go to the file log (appended) unless stdout is given."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        p = subprocess.Popen(args, stdin=stdin, stdout=stdout or out, stderr=out,
                             start_new_session=True, preexec_fn=preexec_fn, env=env)
    finally:
        if log:
            out.close()       # the child has its own copy
    _procs.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=30.0):
    """Stop one process by its pid; returns its exit status (None if it had to be killed)."""
    if p.poll() is not None:
        return p.returncode
    try:
        os.kill(p.pid, sig)
        return p.wait(timeout)
    except ProcessLookupError:
        return p.wait(5)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        return None


def kill_pid(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def on_cleanup(fn):
    _cleanups.append(fn)
    return fn


def cancel_cleanup(fn):
    if fn in _cleanups:
        _cleanups.remove(fn)


def cleanup_all():
    """Run every cleanup step (newest first), then stop whatever is still running.
    A second Ctrl-C or SIGTERM meanwhile must not cut it short: they are ignored
    until it is done, and a step that fails does not keep the others from running."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except BaseException as e:
            print("bench: cleanup %s: %s" % (getattr(fn, "__name__", fn), e), flush=True)
    for p in reversed(_procs):
        try:
            stop(p, timeout=10)
        except BaseException as e:
            print("bench: stopping pid %d: %s" % (p.pid, e), flush=True)


def install_signal_handlers():
    """SIGTERM and SIGHUP end the run like Ctrl-C: through the finally blocks."""
    def handler(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def wait_until(cond, timeout, step=0.05, what="condition"):
    """cond() until it is true, at most timeout seconds; its last value, or an error."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(step)


# ---- /proc ----------------------------------------------------------------------------

def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()     # fields from "state" on


def cpu_seconds(pid, children=True):
    """utime+stime of the whole process (every thread), plus those of its reaped
    children (cutime+cstime) when children is true. 0 when it is gone."""
    try:
        f = _stat_fields(pid)
    except (OSError, ValueError):
        return 0.0
    ticks = int(f[11]) + int(f[12])                 # utime, stime
    if children:
        ticks += int(f[13]) + int(f[14])            # cutime, cstime
    return ticks / CLK_TCK


def status_kb(pid, key):
    """A "VmRSS"/"VmHWM"-like line of /proc/PID/status in KiB; 0 when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"^%s:\s+(\d+) kB" % key, f.read(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def pss_kb(pid):
    """Proportional set size (shared pages split between their users); 0 when gone."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            m = re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def reset_hwm(pid):
    """Start VmHWM again from the current RSS (clear_refs 5, Linux >= 4.0)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError:
        pass


def children(pid):
    """Direct children of pid (every thread's list)."""
    found = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    found += [int(c) for c in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return found


def alive(pid):
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, ValueError):
        return False


def raise_nofile(n):
    """A preexec_fn that lets the child open n files: root may raise the hard limit,
    unless a container took CAP_SYS_RESOURCE away; then as many as the hard limit."""
    def fn():
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        except (ValueError, OSError):
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return fn
