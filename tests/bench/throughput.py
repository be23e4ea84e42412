"""
throughput — Postfix's smtp-source pushing N messages into a relay that hands
them to smtp-sink, for each message size, session count and connection mode,
relayd and Postfix alternating (A/B, then B/A for the next configuration) after
the load tools alone (smtp-source straight into smtp-sink: the ceiling).

One run of one relay measures:
  accept   N / (smtp-source's exit - its start): every message answered 250
  e2e      N / (the sink's count reaching N - smtp-source's start)
  cpu      the relay's CPU seconds (user+system, every process) per 1,000
           messages, from the start until its queue is empty again
  peak     relayd: VmHWM (reset before the run); Postfix: the largest sum of
           its processes' VmRSS, sampled every 0.1 s (a sample can miss a
           peak, so this can only flatter Postfix); and for both the largest
           PSS (sum of the processes' proportional set size, shared pages
           split among their users), sampled every second and at the end
"""
import os
import statistics
import time

import procs

FROM = "bench@example.com"
TO = "rcpt@example.org"
ROW_TIMEOUT = 240           # seconds one run may take before it is stopped and marked
DRAIN_TIMEOUT = 240         # seconds a relay may take to empty its queue after a run
RUN_SECONDS = 6             # what a run of the slower relay should take (--quick: 2)

# Messages per run, at most: the same N for everyone in one configuration, fewer when the
# warm-up shows the slower relay would take longer than RUN_SECONDS (a slow disk).
COUNTS = {  # (size, sessions): (new connection per message, sessions reused)
    (1024, 1): (1000, 1500),
    (1024, 20): (3000, 5000),
    (1024, 200): (3000, 4000),
    (102400, 1): (500, 600),
    (102400, 20): (1500, 2000),
    (102400, 200): (2000, 2000),
}


def plan(quick):
    """Every configuration: (size, sessions, reuse, n)."""
    rows = []
    for size in (1024, 102400):
        for sessions in (1, 20, 200):
            if quick and sessions == 200:
                continue
            for reuse in (False, True):
                n = COUNTS[(size, sessions)][reuse]
                rows.append((size, sessions, reuse, max(100, n // 5) if quick else n))
    return rows


def label(size, sessions, reuse):
    return "%s, %d session%s, %s" % ("1 KB" if size == 1024 else "100 KB", sessions,
                                     "" if sessions == 1 else "s",
                                     "reused" if reuse else "new connection per message")


def smtp_source(port, size, sessions, reuse, n, log):
    args = ["smtp-source", "-s", str(sessions), "-m", str(n), "-l", str(size),
            "-f", FROM, "-t", TO, "-M", "source.bench"]
    if reuse:
        args.append("-d")
    return procs.spawn(args + ["127.0.0.1:%d" % port], log=log)


def measure(sink, port, relay, size, sessions, reuse, n, logdir):
    """One run into port (relay None: the sink itself). A dict of results, with
    "error" set when the run did not complete."""
    r = {"n": n}
    try:
        _measure(sink, port, relay, size, sessions, reuse, n, logdir, r)
    except (TimeoutError, RuntimeError, OSError) as e:
        r.setdefault("error", "%s: %s" % (type(e).__name__, e))
    return r


def _measure(sink, port, relay, size, sessions, reuse, n, logdir, r):
    if relay:
        procs.wait_until(lambda: relay.queue_count() == 0, DRAIN_TIMEOUT, step=0.2,
                         what="%s's queue to empty before the run" % relay.name)
        cpu0 = relay.cpu()
        relay.reset_peak()
        before = relay.counters()
    base = sink.count()
    log = os.path.join(logdir, "smtp-source-%s-%d-%d-%d.log" % (
        relay.name if relay else "sink", size, sessions, reuse))
    t0 = time.monotonic()
    src = smtp_source(port, size, sessions, reuse, n, log)
    t_accept = t_e2e = None
    next_sample, samples = t0, 0
    deadline = t0 + ROW_TIMEOUT
    while (t_accept is None or t_e2e is None) and time.monotonic() < deadline:
        now = time.monotonic()
        if t_accept is None and src.poll() is not None:
            t_accept = now
        if t_e2e is None and sink.count() - base >= n:
            t_e2e = now
        if relay and now >= next_sample:
            relay.sample_peak(pss=samples % 10 == 0)    # PSS costs more to read
            next_sample, samples = now + 0.1, samples + 1
        time.sleep(0.005)
    if t_accept is None or t_e2e is None:
        procs.stop(src, timeout=10)
        r["error"] = "not finished after %ds (sink has %d of %d)" % (
            ROW_TIMEOUT, sink.count() - base, n)
    elif src.returncode != 0:
        r["error"] = "smtp-source exit %d: %s" % (src.returncode, _tail(log))
    if t_accept:
        r["accept"] = n / (t_accept - t0)
    if t_e2e:
        r["e2e"] = n / (t_e2e - t0)
    if relay:
        drain(relay)
        r["cpu_per_1000"] = (relay.cpu() - cpu0) * 1000.0 / n
        relay.sample_peak(pss=True)
        r["peak_kb"] = relay.peak_kb()
        r["peak_pss_kb"] = relay.peak_pss
        r.update(relay.notes(before, n))
    # Once the queue is empty nothing more can arrive: the sink must have exactly n.
    r["sink"] = sink.count() - base
    if r["sink"] != n and "error" not in r:
        r["error"] = "the sink got %d messages, not %d" % (r["sink"], n)


def drain(relay):
    """Wait until the relay's queue is empty, still sampling its memory."""
    def empty():
        relay.sample_peak()
        return relay.queue_count() == 0
    procs.wait_until(empty, DRAIN_TIMEOUT, step=0.1,
                     what="%s's queue to empty after the run" % relay.name)


def fresh(relays, size, sessions, reuse, n, sink, logdir):
    """Restart both relays, so that no configuration inherits the processes, memory or
    cached connections of the one before, and warm them up with a short run of the
    same configuration (Postfix's processes started, relayd's buffers allocated).
    Returns the slower one's end-to-end rate in the warm-up (None if unknown)."""
    for relay in relays:
        relay.stop()
    rates = []
    for relay in relays:
        relay.start()
        w = measure(sink, relay.port, relay, size, sessions, reuse, max(sessions, n // 10),
                    logdir)
        rates.append(w.get("e2e"))
    return min(rates) if all(rates) else None


def count(most, rate, sessions, seconds):
    """N for a run: at most `most`, about `seconds` of the slower relay's warm-up
    rate, and at least five messages per session (and 200) so that ramping up and
    down does not dominate."""
    least = max(200, 5 * sessions)
    if not rate:
        return most
    return max(least, min(most, int(rate * seconds / 100 + 1) * 100))


def run(sink, relayd, postfix, quick, logdir, progress, repeat=1):
    """Every configuration; each relay runs `repeat` times, the order alternating from
    one run to the next (A/B, B/A, …), and its row holds the medians. Returns a list
    of row dicts."""
    rows = []
    for i, (size, sessions, reuse, most) in enumerate(plan(quick)):
        rate = fresh((relayd, postfix), size, sessions, reuse, most, sink, logdir)
        n = count(most, rate, sessions, 2 if quick else RUN_SECONDS)
        row = {"size": size, "sessions": sessions, "reuse": reuse, "n": n,
               "label": label(size, sessions, reuse), "order": []}
        row["ceiling"] = measure(sink, sink.port, None, size, sessions, reuse, n, logdir)
        runs = {relayd.name: [], postfix.name: []}
        for k in range(repeat):
            order = (relayd, postfix) if (i + k) % 2 == 0 else (postfix, relayd)
            for relay in order:
                runs[relay.name].append(measure(sink, relay.port, relay, size, sessions,
                                                reuse, n, logdir))
            row["order"].append([x.name for x in order])
        for name, results in runs.items():
            row[name] = medians(results)
        relayd.stop()       # its last log line counts the configuration's transactions
        stats = relayd.commit_stats()
        if stats and stats[1]:
            row["relayd"]["writes_per_fsync"] = 2 * stats[0] / stats[1]
        rows.append(row)
        progress(row)
    return rows


def medians(results):
    """One result from several runs: the median of each number over the runs that
    completed; a failed run is named in "error"."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    out = {k: statistics.median(r[k] for r in ok if k in r)
           for k in ok[0] if isinstance(ok[0][k], (int, float))}
    out["runs"] = len(ok)
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        out["error"] = "%d of %d runs failed: %s" % (len(failed), len(results), failed[0])
    return out


def _tail(path, n=600):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace").strip()
    except OSError:
        return ""
