"""
run — `make bench`: relayd against a stock Postfix relay, in one run, with
Debian's own tools as load (smtp-source) and upstream (smtp-sink), and relayd
alone with many idle sessions and a queue of a million deferred recipients.
Prints one table and writes it to tests/bench/RESULTS.md (--quick: to
build/bench/RESULTS-quick.md) with the machine's description.

    /usr/bin/python3 tests/bench/run.py [--quick] [--only throughput,latency,idle,queue]

Needs root (a Postfix instance, smtp-sink's -u, open file limits), the
optimised build (build/relayd, build/relayctl, build/bench/queue_fill) and
Postfix's package. Everything runs on loopback ports, in a work directory under
/var/tmp (not tmpfs: fsync must reach a disk), removed at the end; every
process started is stopped by its pid, also after an error or Ctrl-C.
"""
import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(ROOT, "tests", "integration"))   # postfix_main_cf

import bigqueue      # noqa: E402
import idle          # noqa: E402
import latency       # noqa: E402
import machine       # noqa: E402
import procs         # noqa: E402
import report        # noqa: E402
import throughput    # noqa: E402
from postfix_relay import Postfix, version as postfix_version      # noqa: E402
from relayd_relay import Relayd                                     # noqa: E402
from sink import Sink                                               # noqa: E402

SECTIONS = ("throughput", "latency", "idle", "queue")
MEMORY_FS = ("tmpfs", "ramfs")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text):
    print("bench: " + text, flush=True)


def arguments():
    p = argparse.ArgumentParser(description="relayd against Postfix, in one run")
    p.add_argument("--quick", action="store_true",
                   help="fewer and shorter rows (no 200-session rows, N/5, 2,000 idle "
                        "sessions, 100,000 queued recipients): for development")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="comma-separated sections to run: " + ", ".join(SECTIONS))
    p.add_argument("--dir", default="/var/tmp",
                   help="where the work directory goes (a disk, not tmpfs); default /var/tmp")
    p.add_argument("--out", help="the results file (default tests/bench/RESULTS.md, "
                                 "build/bench/RESULTS-quick.md with --quick)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs of each relay per throughput row, alternating, medians "
                        "reported (default 1; 3 on a noisy machine, three times as long)")
    p.add_argument("--idle", type=int, help="idle sessions (default 10000)")
    p.add_argument("--queue", type=int, help="deferred recipients (default 1000000)")
    a = p.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in a.only if s not in SECTIONS]
    if bad:
        p.error("unknown section %s" % ", ".join(bad))
    a.idle = a.idle or (2000 if a.quick else 10000)
    a.queue = a.queue or (100000 if a.quick else 1000000)
    a.out = a.out or os.path.join(ROOT, "build/bench/RESULTS-quick.md" if a.quick
                                  else "tests/bench/RESULTS.md")
    return a


def preflight():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (a Postfix instance, smtp-sink -u, open file limits)")
    need = [os.path.join(ROOT, p) for p in ("build/relayd", "build/relayctl",
                                            "build/bench/queue_fill")]
    missing = [p for p in need if not os.access(p, os.X_OK)]
    missing += [t for t in ("smtp-source", "smtp-sink", "postfix", "postconf", "mdb_stat")
                if not shutil.which(t)]
    if missing:
        sys.exit("bench: missing %s (run `make bench`, which builds and installs them)"
                 % ", ".join(missing))


def workdir(base, keep):
    d = tempfile.mkdtemp(prefix="relayd-bench-", dir=base)
    os.chmod(d, 0o755)           # Postfix's unprivileged daemons traverse it
    if not keep:
        procs.on_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    fstype = machine.mount_of(d)[1]
    if fstype in MEMORY_FS:
        sys.exit("bench: %s is on %s: fsync would not reach a disk; give --dir on a disk"
                 % (d, fstype))
    return d


def section(results, name, fn):
    """Run one section; an error is recorded and the others still run."""
    t0 = time.monotonic()
    say("%s …" % name)
    try:
        results[name] = fn()
    except KeyboardInterrupt:
        raise
    except Exception as e:
        traceback.print_exc()
        results[name] = {"error": "%s: %s" % (type(e).__name__, e)}
    say("%s done in %.0f s" % (name, time.monotonic() - t0))


def relays_section(a, results, work, sink, binaries):
    """throughput and latency: relayd and Postfix side by side, the same sink."""
    relayd = Relayd(binaries["relayd"], os.path.join(work, "relayd"), free_port(),
                    sink_port=sink.port)
    procs.on_cleanup(relayd.stop)
    postfix = Postfix(os.path.join(work, "postfix"), free_port(), sink.port)
    try:            # each configuration starts them afresh (throughput.fresh)
        if "throughput" in a.only:
            def row_done(row):
                r, p, c = row["relayd"], row["Postfix"], row["ceiling"]
                say("  %-50s e2e relayd %s, Postfix %s, tools %s msg/s" % (
                    row["label"], report._num(r.get("e2e")), report._num(p.get("e2e")),
                    report._num(c.get("e2e"))))
            section(results, "throughput", lambda: throughput.run(
                sink, relayd, postfix, a.quick, work, row_done, a.repeat))
        if "latency" in a.only:
            section(results, "latency", lambda: latency_rows(a, sink, relayd, postfix, work))
    finally:
        postfix.stop()
        relayd.stop()


def latency_rows(a, sink, relayd, postfix, work):
    out = []
    for i, (sessions, messages) in enumerate(((1, 1000), (20, 100))):
        if a.quick:
            messages //= 5
        row = {"sessions": sessions, "messages": sessions * messages}
        throughput.fresh((relayd, postfix), 1024, sessions, True, sessions * messages, sink,
                         work)
        row["ceiling"] = latency.run(sink.port, sessions, messages, 1024)
        for relay in ((relayd, postfix) if i % 2 == 0 else (postfix, relayd)):
            procs.wait_until(lambda: relay.queue_count() == 0, 240, step=0.2,
                             what="%s's queue to empty" % relay.name)
            row[relay.name] = latency.run(relay.port, sessions, messages, 1024)
        say("  latency, %d sessions: p99 relayd %s ms, Postfix %s ms" % (
            sessions, row["relayd"]["p99_ms"], row["Postfix"]["p99_ms"]))
        out.append(row)
    return out


def main():
    a = arguments()
    preflight()
    procs.install_signal_handlers()
    binaries = {k: os.path.join(ROOT, v) for k, v in (
        ("relayd", "build/relayd"), ("relayctl", "build/relayctl"),
        ("queue_fill", "build/bench/queue_fill"))}
    results = {"started": time.time(), "quick": a.quick, "repeat": a.repeat}
    t0 = time.monotonic()
    try:
        work = workdir(a.dir, a.keep)
        say("work directory %s%s" % (work, " (kept)" if a.keep else ""))
        m = machine.describe(ROOT, work, postfix_version())
        say("%s, %s cores; %s; %.0f fdatasync/s" % (m["cpu"], m["cores"], m["filesystem"],
                                                    m["fdatasync_per_second"]))
        sink = Sink(work, free_port()).start()
        procs.on_cleanup(sink.stop)
        if "throughput" in a.only or "latency" in a.only:
            try:
                relays_section(a, results, work, sink, binaries)
            except Exception as e:          # e.g. Postfix's configuration was refused
                traceback.print_exc()
                for name in ("throughput", "latency"):
                    results.setdefault(name, {"error": "%s: %s" % (type(e).__name__, e)})
        if "idle" in a.only:
            section(results, "idle", lambda: idle.measure(
                binaries["relayd"], os.path.join(work, "idle"), free_port(), a.idle,
                idle_seconds=5 if a.quick else 10))
        if "queue" in a.only:
            section(results, "queue", lambda: bigqueue.run(
                binaries["relayd"], binaries["relayctl"], binaries["queue_fill"], work,
                free_port(), sink, a.queue, 1, 1024, lambda t: say("  " + t),
                fill_seconds=120 if a.quick else 600))
        results["load_after"] = machine.loadavg()
        results["seconds"] = time.monotonic() - t0
        print()
        print(report.table(results))
        print()
        text = report.markdown(results, m, a.quick)
        report.write(a.out, text)
        raw = os.path.join(ROOT, "build", "bench",
                           "results-quick.json" if a.quick else "results.json")
        os.makedirs(os.path.dirname(raw), exist_ok=True)
        with open(raw, "w", encoding="utf-8") as f:
            json.dump({"machine": m, "results": results}, f, indent=1, default=str)
        say("written to %s (%.1f minutes)" % (os.path.relpath(a.out, ROOT),
                                               results["seconds"] / 60))
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        procs.cleanup_all()
    failed = [k for k in SECTIONS if isinstance(results.get(k), dict) and
              "error" in results[k]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
