"""
test_slow_clients — a slowloris: 1,000 clients, each sending one byte every
few seconds and never finishing a line, for RELAYD_SLOW_SECONDS (60 by
default; `make test` runs 25), while normal clients keep getting their whole
transactions served within a few seconds; relayd does not spin on them.
"""
import os
import re
import resource
import socket
import threading
import time

from harness import Client, running, run, test, wait_for

SLOW = int(os.environ.get("RELAYD_SLOW_CLIENTS", "1000"))
SECONDS = float(os.environ.get("RELAYD_SLOW_SECONDS", "60"))
BYTE_EVERY = 3.0            # seconds between two bytes of one slow client
MSG = "Subject: meanwhile\r\n\r\nserved while the slowloris crawls\r\n"


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@test
def test_slowloris_1000_clients_and_normal_clients_still_served():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = SLOW + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    extra = "max_clients %d\n" % (SLOW + 100)
    with running(extra=extra) as r:
        slow, line = [], b"EHLO slowloris.example\r\n"
        try:
            for i in range(SLOW):               # connect them, a few at a time
                s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
                s.setblocking(False)
                slow.append(s)
                if i % 50 == 49:
                    time.sleep(0.05)
            wait_for(lambda: r.log_text().count("connect from") >= SLOW, 30,
                     what="%d connections" % SLOW)
            cpu0, t0 = cpu_seconds(r.proc.pid), time.monotonic()
            latencies, errors, done = [], [], threading.Event()

            def normal():
                while not done.is_set():
                    start = time.monotonic()
                    try:
                        c = Client(r.port, timeout=20)
                        c.hello()
                        c.send_message("a@example.com", ["b@example.org"], MSG)
                        c.cmd("QUIT", 221)
                        c.close()
                        latencies.append(time.monotonic() - start)
                    except Exception as e:          # noted, and the test fails
                        errors.append(repr(e))
                    done.wait(0.5)
            normals = [threading.Thread(target=normal) for _ in range(2)]
            for t in normals:
                t.start()
            sent, step = 0, BYTE_EVERY / SLOW       # one byte somewhere every `step` s
            while time.monotonic() - t0 < SECONDS:
                s = slow[sent % SLOW]
                k = (sent // SLOW) % len(line)
                if k < len(line) - 2:               # the line never ends
                    try:
                        s.send(line[k:k + 1])
                    except OSError:         # full, or closed by timeout_command (60 s)
                        pass
                sent += 1
                time.sleep(step)
            done.set()
            for t in normals:
                t.join(30)
            cpu = cpu_seconds(r.proc.pid) - cpu0
            wall = time.monotonic() - t0
        finally:
            for s in slow:
                s.close()
        assert not errors, errors[:3]
        assert len(latencies) >= SECONDS / 4, len(latencies)
        worst = max(latencies)
        print("  %d slow clients, %d bytes from them in %.0fs; %d normal transactions, "
              "worst %.2fs; relayd used %.1fs CPU" % (SLOW, sent, wall, len(latencies), worst,
                                                     cpu))
        assert worst < 5, "a normal client waited %.1fs" % worst
        assert cpu < wall * 0.5, "relayd spun: %.1fs CPU in %.1fs" % (cpu, wall)
        assert "(max_clients)" not in r.log_text() and "too many connections" not in r.log_text()
        assert len(r.queued_ids()) == len(latencies)
        log = r.log_text()
        assert re.search(r"connect from \[127\.0\.0\.1\]", log)


if __name__ == "__main__":
    run()
