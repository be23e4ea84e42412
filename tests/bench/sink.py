"""
sink — Postfix's smtp-sink as the upstream of both relays (and the target of
the load tools' own ceiling). It runs for the whole benchmark; `-c` makes it
write "sess=N quit=N mesg=N" followed by a carriage return each time a
message's final dot arrives, so the last complete record of its output file
is how many messages it has received so far. A row counts the difference.
"""
import os
import re
import socket

import procs

_RECORD = re.compile(rb"mesg=(\d+)\r")


class Sink:
    def __init__(self, workdir, port):
        self.port = port
        self.out = os.path.join(workdir, "smtp-sink.out")
        self.log = os.path.join(workdir, "smtp-sink.log")
        self.proc = None

    def start(self):
        # -u: it runs as root here and must drop to a user; -m: up to 512 sessions at once
        # (the default 256 would throttle the 200-session ceiling row); backlog 1024.
        with open(self.out, "wb") as out:
            self.proc = procs.spawn(["smtp-sink", "-c", "-u", "postfix", "-m", "512",
                                     "127.0.0.1:%d" % self.port, "1024"],
                                    log=self.log, stdout=out)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("smtp-sink exited: %s" % _tail(self.log))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        procs.wait_until(up, 20, what="smtp-sink to listen")
        return self

    def count(self):
        """Messages received since the sink started."""
        with open(self.out, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 256))
            found = _RECORD.findall(f.read())
        return int(found[-1]) if found else 0

    def stop(self):
        if self.proc:
            procs.stop(self.proc, timeout=10)


def _tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return ""
