"""
report — the one table (relayd, Postfix, relayd/Postfix, and the load tools'
ceiling or the empty-queue baseline), printed and written to RESULTS.md with
the machine's description and how each number was measured. A section after
KEEP_MARK in an existing RESULTS.md is written by hand and kept as it is.
"""
import os
import time

KEEP_MARK = "<!-- written by hand below this line: make bench keeps it -->"
HIGHER, LOWER = "higher", "lower"


def _num(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        s = "%.0f" % v
    elif abs(v) >= 10:
        s = "%.1f" % v
    elif abs(v) >= 1:
        s = "%.2f" % v
    else:
        s = "%.3g" % v
    return s + unit


def _line(measure, relayd, postfix, better, extra=None, unit=""):
    """One row: the ratio is always relayd/Postfix; better says which way is good."""
    ratio = ahead = "—"
    if isinstance(relayd, (int, float)) and isinstance(postfix, (int, float)) and postfix:
        ratio = "%.2f×" % (relayd / postfix)
        ahead = "yes" if (relayd > postfix if better == HIGHER else relayd < postfix) else "no"
    return [measure, _num(relayd, unit), _num(postfix, unit), ratio, ahead,
            _num(extra, unit) if extra is not None else "—"]


def _get(res, key):
    """A measured value, or the reason there is none."""
    if res is None:
        return None
    if key in res:
        return res[key]
    return "failed" if "error" in res else None


def _rows_of(results, name, out):
    """A section's list of rows; a section that failed as a whole says so in one line."""
    v = results.get(name)
    if isinstance(v, dict) and "error" in v:
        out.append([name, "failed", "failed", "—", "—", "—"])
        return []
    return v or []


def rows(results):
    out = []
    tp = _rows_of(results, "throughput", out)
    for key, what, better in (("e2e", "end to end, msg/s", HIGHER),
                              ("accept", "accepted (250), msg/s", HIGHER)):
        for row in tp:
            out.append(_line("%s — %s" % (what, row["label"]), _get(row["relayd"], key),
                             _get(row["Postfix"], key), better, _get(row["ceiling"], key)))
    for row in tp:
        out.append(_line("CPU s per 1,000 msgs — %s" % row["label"],
                         _get(row["relayd"], "cpu_per_1000"),
                         _get(row["Postfix"], "cpu_per_1000"), LOWER))
    for key, what in (("peak_kb", "peak RSS"), ("peak_pss_kb", "peak PSS")):
        for row in tp:
            mb = lambda r: r[key] / 1024 if r and key in r else _get(r, key)
            out.append(_line("%s, MB — %s" % (what, row["label"]), mb(row["relayd"]),
                             mb(row["Postfix"]), LOWER))
    for lat in _rows_of(results, "latency", out):
        for p in ("p50_ms", "p99_ms"):
            out.append(_line("250 after DATA, %s ms — 1 KB, %d session%s, %d msgs" % (
                p[:3], lat["sessions"], "" if lat["sessions"] == 1 else "s",
                lat["messages"]), _get(lat["relayd"], p), _get(lat["Postfix"], p), LOWER,
                _get(lat["ceiling"], p)))
    idle = results.get("idle")
    if idle and "error" in idle:
        out.append(_line("idle sessions", "failed", None, LOWER))
    elif idle:
        n = idle.get("count", "?")
        out.append(_line("RSS per idle session, KB — %s sessions after EHLO" % n,
                         _get(idle, "per_session_kb"), None, LOWER))
        out.append(_line("CPU s while %s sessions idle %s s" % (n, idle.get("idle_seconds")),
                         _get(idle, "idle_cpu_seconds"), None, LOWER))
    q = results.get("queue")
    if q and "big" in q:
        big, empty, fill = q["big"], q["empty"], q["fill"]
        n = "%d deferred recipients" % fill["recipients"]
        mb = lambda v: v / 1024 if isinstance(v, (int, float)) else v
        same = lambda v: v
        for key, what, scale in (
                ("startup_seconds", "start-up (exec to the first 220), s", same),
                ("pick_new_ms", "a new message, its 250 to the sink, ms", same),
                ("pick_flush_ms", "relayctl flush ID to the sink, ms", same),
                ("rss_start_kb", "RSS after start-up, MB", mb),
                ("rss_peak_kb", "peak RSS (VmHWM), MB", mb),
                ("idle_cpu_seconds", "CPU s while idle %s s" % big.get("idle_seconds"), same),
                ("stop_seconds", "graceful stop (SIGTERM to exit), s", same)):
            out.append(_line("%s — %s" % (n, what), scale(big.get(key)), None, LOWER,
                             scale(empty.get(key))))
        out.append(_line("%s — built by queue_fill in, s" % n, fill["fill_seconds"], None,
                         LOWER))
    elif q and "error" in q:
        out.append(_line("deferred recipients", "failed", None, LOWER))
    return out


def table(results):
    head = ["measure", "relayd", "Postfix", "relayd/Postfix", "relayd ahead",
            "load tools alone / empty queue"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    return "\n".join(lines)


def details(results):
    """Per run: N, the order, errors, relayd's queue writes per fsync."""
    out = []
    for row in _rows_of(results, "throughput", []):
        bits = []
        for who in ("ceiling", "relayd", "Postfix"):
            r = row[who]
            bit = "%s %s" % (who, "error: " + r["error"] if "error" in r else "ok")
            if "writes_per_fsync" in r:
                bit += ", %.1f queue writes per fsync (warm-up included)" % (
                    r["writes_per_fsync"])
            if "rss_file_kb" in r:
                bit += ", %.1f MB of its RSS file-backed at the end (the queue's map)" % (
                    r["rss_file_kb"] / 1024)
            bits.append(bit)
        order = ", ".join(" then ".join(o) for o in row["order"])
        out.append("- %s: N=%d, order %s; %s" % (row["label"], row["n"], order,
                                                  "; ".join(bits)))
    for name in ("throughput", "latency", "idle", "queue"):
        v = results.get(name)
        if isinstance(v, dict) and "error" in v:
            out.append("- %s: error: %s" % (name, v["error"]))
        if isinstance(v, list):
            for lat in v:
                for who in ("relayd", "Postfix", "ceiling"):
                    if lat[who].get("errors"):
                        out.append("- latency, %d sessions, %s: %s" % (
                            lat["sessions"], who, lat[who]["errors"]))
    if results.get("idle") and "held" in results["idle"]:
        i = results["idle"]
        out.append("- idle sessions: %d of %d held, opened in %.1f s; relayd RSS %.1f MB "
                   "before, %.1f MB with them" % (i["held"], i["count"], i["open_seconds"],
                                                  i["rss_before_kb"] / 1024,
                                                  i["rss_after_kb"] / 1024))
    q = results.get("queue")
    if q and "fill" in q:
        f = q["fill"]
        out.append("- queue: %d messages, %d recipients, %d write transactions, data.mdb "
                   "%.0f MB%s" % (f["messages"], f["recipients"], f["transactions"],
                                  f["data_mdb_bytes"] / 1e6,
                                  "; STOPPED EARLY (the disk was too slow for %d in time)" %
                                  f["asked"] if f.get("stopped") else ""))
    return "\n".join(out)


def machine_lines(m, results):
    return "\n".join([
        "- CPU: %s, %s cores; memory %s" % (m["cpu"], m["cores"], m["memory"]),
        "- kernel %s; %s" % (m["kernel"], m["debian"]),
        "- queues (relayd's and Postfix's, one directory): %s; %.0f fdatasync/s "
        "measured there at the start" % (m["filesystem"], m["fdatasync_per_second"]),
        "- relayd %s; Postfix %s" % (m["relayd"], m["postfix"]),
        "- load average before / after: %s / %s" % (" ".join(m["load_before"]),
                                                     " ".join(results.get("load_after", []))),
    ])


METHOD = """\
- Load: Postfix's `smtp-source` (`-s` sessions, `-d` to reuse them, `-l` bytes); sink:
  Postfix's `smtp-sink`, one for the whole run, counted through its `-c` output.
  relayd and a throwaway Postfix instance (its own config, `relayhost` the sink,
  `mynetworks` loopback, otherwise defaults) take turns, A/B then B/A; each
  configuration starts both afresh, warms them up with a short run of the same
  configuration, then runs the load tools alone (smtp-source into smtp-sink), then
  the two relays with the same N messages (N under "Runs": about 6 s of the slower
  relay's warm-up rate, at least 5 per session, at most a fixed count).
- Defaults that shape the rows: relayd opens at most 4 connections to an upstream
  (`max_connections`), Postfix up to 20 (`default_destination_concurrency_limit`);
  Postfix runs at most 100 smtpd processes (`default_process_limit`), so 200 sessions
  with a new connection per message queue up in its listen backlog.
- end to end: N / (first connect → the sink has all N); accepted: N / (first connect →
  smtp-source done). CPU: user+system seconds of relayd (every thread), of Postfix (the
  master, every child, and the children it reaped), from the start of a run until its
  queue is empty, per 1,000 messages. Peak RSS: relayd's VmHWM (reset before the run);
  Postfix's largest sum of VmRSS over its processes, sampled every 0.1 s (it can only
  miss a peak, but a sum of RSS counts the shared libraries once per process). Peak
  PSS: the same with shared pages split among the processes that map them, sampled
  every second, for both. relayd's RSS includes the queue's pages that LMDB maps
  (file-backed, reclaimable; "Runs" says how much).
- 250 latency: the benchmark's own client (latency.py), reused sessions, from the final
  dot handed to the kernel to the 250 read.
- Durability on everywhere: relayd commits with fsync before its 250 (it has no switch
  to turn that off); Postfix's cleanup fsyncs each queue file before smtpd's 250
  (its default, and it has no switch either). Both queues are in one directory on the
  file system above.
- relayd alone: idle sessions (idle.py: connect, EHLO, wait) — RSS before and after,
  divided by their number. A queue of deferred recipients built by queue_fill.c through
  the queue module's own queue_commit() and queue_update() (group commit, fsync; each
  message due again 30 to 90 minutes later), then relayd started on it with the page
  cache warm; a new message's and a flushed message's way to the sink are medians
  (20 and 5 of them)."""


def markdown(results, machine, quick):
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results["started"]))
    return "\n".join([
        "# relayd benchmark: relayd and Postfix as a relay, in the same run",
        "",
        "Written by `make bench%s` (tests/bench/run.py) on %s, in %.0f minutes%s. Only the "
        "ratios of one run mean something: the machine may be shared and noisy."
        % (" QUICK=1" if quick else "", when, results["seconds"] / 60,
           "; each relay ran %d times per throughput row, medians shown" % results["repeat"]
           if results.get("repeat", 1) > 1 else ""),
        "",
        "## Machine",
        "",
        machine_lines(machine, results),
        "",
        "## Results",
        "",
        table(results),
        "",
        "## Runs",
        "",
        details(results),
        "",
        "## How it was measured",
        "",
        METHOD,
        "",
    ])


def write(path, text):
    """Write the generated part; keep a hand-written part after KEEP_MARK."""
    kept = ""
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if KEEP_MARK in old:
            kept = old[old.index(KEEP_MARK):]
    except OSError:
        pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text + ("\n" + kept if kept else ""))
    os.replace(path + ".tmp", path)
