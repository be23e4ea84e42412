"""
postfix_main_cf — `postfix -c DIR` only accepts a DIR listed in the default
/etc/postfix/main.cf (alternate_config_directories). The throwaway Postfix
instances of test_postfix_client.py and of the benchmark (tests/bench/
postfix_relay.py) register their config directory here and take it off again,
one editor at a time. A fresh Debian has no main.cf at all ("No
configuration"): then one is created, marked as ours, and removed once it
lists nothing more.
"""
import fcntl
import os
import re
import subprocess

DEFAULT_MAIN_CF = "/etc/postfix/main.cf"
OURS = "# created by relayd's tests/"      # the start of every mark below


def postconf(*args):
    r = subprocess.run(["postconf"] + list(args), capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("postconf %s: %s" % (args, r.stderr.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


class _main_cf_lock:
    """A lock on /etc/postfix itself, so no lock file is left behind."""

    def __enter__(self):
        self.fd = os.open(os.path.dirname(DEFAULT_MAIN_CF), os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        os.close(self.fd)                         # releases the lock
        return False


def _alternate_dirs():
    value = postconf("-c", os.path.dirname(DEFAULT_MAIN_CF), "-h",
                     "alternate_config_directories").strip()
    return [d for d in re.split(r"[\s,]+", value) if d]


def _set_alternate_dirs(dirs):
    postconf("-c", os.path.dirname(DEFAULT_MAIN_CF), "-e",
             "alternate_config_directories = " + ", ".join(dirs))


def register(confdir, mark):
    """List confdir; drop entries of earlier runs (ours: "/relayd-" in the path) whose
    directory is gone. mark: the first line of a main.cf we create (it starts with OURS)."""
    with _main_cf_lock():
        if not os.path.exists(DEFAULT_MAIN_CF):
            with open(DEFAULT_MAIN_CF, "w") as f:
                f.write(mark)
        dirs = [d for d in _alternate_dirs() if os.path.isdir(d) or "/relayd-" not in d]
        if confdir not in dirs:
            dirs.append(confdir)
        _set_alternate_dirs(dirs)


def unregister(confdir):
    """Take confdir off the list; remove main.cf when we made it and it lists nothing more."""
    with _main_cf_lock():
        dirs = [d for d in _alternate_dirs() if d != confdir]
        if not dirs:
            with open(DEFAULT_MAIN_CF) as f:
                lines = f.readlines()
            if lines and lines[0].startswith(OURS) and all(
                    l.startswith("alternate_config_directories") for l in lines[1:]):
                os.unlink(DEFAULT_MAIN_CF)
                return
        _set_alternate_dirs(dirs)
