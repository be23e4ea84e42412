"""
bigqueue — relayd with a queue of a million deferred recipients.

The queue is built by build/bench/queue_fill (queue_fill.c): through the
queue/ module's own queue_commit() and queue_update(), group-committed and
fsynced like relayd's own writes, as if an upstream had refused every first
attempt; every retry is due 30 to 90 minutes later. Then relayd starts on it
with the sink as its upstream, and we measure:

  start-up     exec to the first 220 greeting (the queue opened, the
               scheduler's first look done), the page cache warm from the fill
  pick, new    a new message's 250 to its arrival at the sink: the scheduler
               finds the one due message in front of a million that are not
  pick, flush  `relayctl flush ID` of a message in the middle of the queue to
               its arrival at the sink
  RSS          after start-up, and the peak (VmHWM) after the picks
  idle CPU     relayd's CPU seconds over a few idle seconds (no polling)

The same on an empty queue, in the same run, is the baseline.
"""
import os
import shutil
import socket
import statistics
import subprocess
import time

import procs
from relayd_relay import Relayd

PICKS = 20           # new messages, one after the other (the median is reported)
FLUSHES = 5          # relayctl flush of messages spread over the queue


def fill(queue_fill, queue_dir, messages, rcpts, body, log, max_seconds):
    """The queue; on a disk too slow for all of it in max_seconds, what it got by then."""
    t0 = time.monotonic()
    with open(log, "ab") as err:
        r = subprocess.run([queue_fill, queue_dir, str(messages), str(rcpts), str(body),
                            str(max_seconds)], stdout=subprocess.PIPE, stderr=err,
                           timeout=max_seconds + 600)
    out = r.stdout.decode()
    if r.returncode != 0:
        raise RuntimeError("queue_fill failed (%d): %s" % (r.returncode, out[-500:]))
    res = dict(kv.split("=", 1) for kv in out.split() if "=" in kv and
               not kv.startswith("sample="))
    samples = [kv.split("=", 1)[1] for kv in out.split() if kv.startswith("sample=")]
    size = os.path.getsize(os.path.join(queue_dir, "data.mdb"))
    return {"messages": int(res["messages"]), "recipients": int(res["recipients"]),
            "fill_seconds": time.monotonic() - t0, "transactions": int(res["transactions"]),
            "data_mdb_bytes": size, "asked": messages * rcpts,
            "stopped": res.get("stopped") == "1"}, samples


def send_one(port):
    """One message over SMTP; the time its 250 arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        f = s.makefile("rb")

        def expect(code):
            while True:
                line = f.readline()
                if len(line) < 4:
                    raise EOFError("connection closed")
                if line[3:4] != b"-":
                    if int(line[:3]) != code:
                        raise RuntimeError("expected %d: %r" % (code, line))
                    return
        expect(220)
        for cmd, code in ((b"EHLO pick.bench", 250), (b"MAIL FROM:<pick@example.com>", 250),
                          (b"RCPT TO:<pick@example.org>", 250), (b"DATA", 354)):
            s.sendall(cmd + b"\r\n")
            expect(code)
        s.sendall(b"Subject: pick\r\n\r\npick\r\n.\r\n")
        expect(250)
        t = time.monotonic()
        s.sendall(b"QUIT\r\n")
        return t


def at_sink(sink, base, timeout=120):
    """The time the sink's count passes base, to a tenth of a millisecond (the times
    measured are a few milliseconds: a coarser poll would measure itself)."""
    procs.wait_until(lambda: sink.count() > base, timeout, step=0.0001,
                     what="the message at the sink")
    return time.monotonic()


def picks(r, sink, relayctl, samples):
    new, flushed = [], []
    for _ in range(PICKS):
        base = sink.count()
        t = send_one(r.port)
        new.append(at_sink(sink, base) - t)
        time.sleep(0.2)
    for qid in samples[:FLUSHES]:
        base = sink.count()
        t = time.monotonic()
        out = r.relayctl(relayctl, "flush", qid)
        if out.returncode != 0:
            raise RuntimeError("relayctl flush %s: %s" % (qid, out.stderr.decode()))
        flushed.append(at_sink(sink, base) - t)
        time.sleep(0.2)
    return new, flushed


def measure_one(binary, relayctl, dir, port, sink, samples, idle_seconds):
    r = Relayd(binary, dir, port, sink_port=sink.port)
    try:
        res = {"startup_seconds": r.start()}
        res["rss_start_kb"] = r.rss_kb()
        cpu0 = r.cpu()
        time.sleep(idle_seconds)
        res["idle_cpu_seconds"] = r.cpu() - cpu0
        res["idle_seconds"] = idle_seconds
        new, flushed = picks(r, sink, relayctl, samples)
        res["pick_new_ms"] = statistics.median(new) * 1000
        if flushed:
            res["pick_flush_ms"] = statistics.median(flushed) * 1000
        res["rss_peak_kb"] = r.peak_kb()
        res["stop_seconds"] = r.stop()
        return res
    finally:
        r.stop()


def run(binary, relayctl, queue_fill, workdir, port, sink, messages, rcpts, body,
        progress, idle_seconds=5, fill_seconds=600):
    out = {}
    empty_dir = os.path.join(workdir, "empty")
    out["empty"] = measure_one(binary, relayctl, empty_dir, port, sink, [], idle_seconds)
    progress("empty queue: start-up %.3f s, new message picked in %.1f ms" % (
        out["empty"]["startup_seconds"], out["empty"]["pick_new_ms"]))
    shutil.rmtree(empty_dir, ignore_errors=True)

    big_dir = os.path.join(workdir, "big")
    os.makedirs(big_dir)
    try:
        out["fill"], samples = fill(queue_fill, os.path.join(big_dir, "queue"), messages,
                                    rcpts, body, os.path.join(workdir, "queue_fill.log"),
                                    fill_seconds)
        progress("queue of %d recipients built in %.0f s (%d transactions, %.0f MB)" % (
            out["fill"]["recipients"], out["fill"]["fill_seconds"],
            out["fill"]["transactions"], out["fill"]["data_mdb_bytes"] / 1e6))
        out["big"] = measure_one(binary, relayctl, big_dir, port, sink, samples,
                                 idle_seconds)
        progress("big queue: start-up %.3f s, new message picked in %.1f ms, flushed one "
                 "in %.1f ms" % (out["big"]["startup_seconds"], out["big"]["pick_new_ms"],
                                 out["big"].get("pick_flush_ms", 0)))
    finally:
        shutil.rmtree(big_dir, ignore_errors=True)
    return out
