"""bench/measure.py — runs and measures the benchmark suite (stdlib only).

Called by ``bench/run`` once nginx serves the fixtures. It runs, interleaved
and with the order rotated on every repetition:

* ``--once`` syncs from an empty folder for every instance count, for
  dds-certsync, the SDK script and (for small counts) the curl floor: wall
  time of each run and its peak RSS from GNU ``/usr/bin/time -f %M``;
* the daemon at rest after syncing 10 instances (``interval = "1h"``): RSS
  and CPU consumed over a window;
* the daemon polling every second: CPU per round, rounds counted from the
  nginx access log of the API location;
* the release binary's size;

then writes a Markdown report (and the raw numbers as JSON next to it).
Every synced folder is checked against the served certificates; a run that
fails or leaves wrong files is reported and left out of the statistics.
"""

import argparse
import base64
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

TOKEN = "bench"
MIB = 1024 * 1024
CATEGORIES = ("international", "national")
PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)
RSS_REPS = 3  # runs under GNU time per (tool, size), for peak RSS
LIVE = set()  # Popen objects still running, killed on SIGTERM/SIGINT


# --------------------------------------------------------------------------
# processes


@dataclass
class Run:
    """One measured process run."""

    wall: float
    rss_kib: "int | None"  # None: a bare run, timed only
    ok: bool
    error: str = ""


def scrubbed_env(extra=None):
    """The environment for every tool: no proxies, no inherited tool config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy")
        and not k.startswith(("DDS_CERTSYNC_", "HUAWEICLOUD_SDK_"))
        and k not in ("RUST_LOG", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")
    }
    env["NO_PROXY"] = "*"
    env["no_proxy"] = "*"
    env.update(extra or {})
    return env


def run_measured(argv, env, timeout, stderr_path, with_rss=False):
    """Run argv to completion; return its wall time and, if asked, peak RSS (KiB).

    Wall time is taken around spawn→exit of the bare command. Peak RSS needs
    a run under ``/usr/bin/time -f %M`` (a separate run: the wrapper adds about
    2 ms of its own): this process's own wait4 would not do, because a child
    forked from Python inherits Python's resident pages and the kernel folds
    them into ``ru_maxrss`` at exec, so every tool would show at least
    Python's own RSS (about 18 MiB).
    """
    rss_path = stderr_path + ".rss"
    if with_rss:
        argv = ["/usr/bin/time", "-f", "%M", "-o", rss_path, *argv]
    with open(stderr_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group, killed as a whole
        )
        LIVE.add(proc)
        timer = threading.Timer(timeout, kill_group, (proc,))
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    LIVE.discard(proc)
    rss = read_rss(rss_path) if with_rss else None
    if proc.returncode != 0:
        return Run(wall, rss, False, f"exit {proc.returncode}: {tail(stderr_path)}")
    return Run(wall, rss, True)


def read_rss(path):
    """The %M value GNU time wrote (its last line), or 0."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = handle.read().strip().splitlines()
        return int(lines[-1]) if lines else 0
    except (OSError, ValueError):
        return 0


def tail(path, lines=3):
    """The last lines of a log file, on one line."""
    try:
        with open(path, "rb") as handle:
            text = handle.read()[-4000:].decode("utf-8", "replace")
    except OSError as exc:
        return f"<{exc}>"
    return " | ".join(text.strip().splitlines()[-lines:])


def stop(proc, grace=5.0):
    """SIGTERM, then SIGKILL after grace seconds; return the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    LIVE.discard(proc)
    return proc.returncode


def kill_group(proc):
    """SIGKILL a child started with start_new_session, and its descendants."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


def on_signal(signum, _frame):
    """Kill whatever we started, then leave."""
    for proc in list(LIVE):
        kill_group(proc)
    sys.exit(128 + signum)


# --------------------------------------------------------------------------
# /proc sampling


def proc_sample(pid):
    """RSS, peak RSS (KiB), threads and CPU used so far by a process.

    Two CPU sources: utime+stime from /proc/PID/stat (counts exited threads
    too, but in clock ticks of 10 ms) and the per-thread schedstat run time
    (nanoseconds, but only for threads still alive; kept per thread id).
    """
    status = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    sched_ns = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as handle:
                sched_ns[tid] = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return {
        "rss_kib": int(status.get("VmRSS", "0 kB").split()[0]),
        "hwm_kib": int(status.get("VmHWM", "0 kB").split()[0]),
        "threads": int(status.get("Threads", "0")),
        "cpu_ms_ticks": ticks * 1000.0 / os.sysconf("SC_CLK_TCK"),
        "sched_ns": sched_ns,
        "t": time.monotonic(),
    }


def sched_delta_ms(before, after):
    """CPU ms by schedstat between two samples, and whether a thread exited."""
    total = 0
    for tid, ns in after["sched_ns"].items():
        total += ns - before["sched_ns"].get(tid, 0)
    exited = any(tid not in after["sched_ns"] for tid in before["sched_ns"])
    return total / 1e6, exited


def count_lines(path):
    """Lines in a file (0 if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------
# fixtures and checks


def pem_ders(data):
    """The DER bytes of every CERTIFICATE block, sorted (order-insensitive)."""
    ders = []
    for block in PEM_RE.findall(data):
        try:
            ders.append(base64.b64decode(b"".join(block.split()), validate=True))
        except ValueError:
            ders.append(b"<bad base64>")
    return sorted(ders)


def default_file_name(_k, iid, cat):
    """How the curl floor and the SDK script name a synced file."""
    return f"{iid}-{cat}.crt"


def daemon_file_name(k, _iid, cat):
    """How dds-certsync's configs name a synced file: short, so that 10,000
    instances fit in the 1 MiB a config file may have."""
    return f"{k}{cat[0]}.crt"


class Fixtures:
    """The instance ids and what each synced file must contain."""

    def __init__(self, ids_path, www):
        with open(ids_path, encoding="ascii") as handle:
            self.ids = [line.strip() for line in handle if line.strip()]
        self.expected = {}
        for iid in self.ids:
            for cat in CATEGORIES:
                with open(os.path.join(www, "certs", f"{iid}-{cat}.crt"), "rb") as h:
                    self.expected[(iid, cat)] = pem_ders(h.read())

    def check(self, out_dir, count, file_name=None):
        """'' if out_dir holds the right certificates for the first count ids.

        file_name(k, iid, cat) names instance k's file (k from 1); by default
        "<iid>-<category>.crt".
        """
        file_name = file_name or default_file_name
        for k, iid in enumerate(self.ids[:count], start=1):
            for cat in CATEGORIES:
                path = os.path.join(out_dir, file_name(k, iid, cat))
                try:
                    with open(path, "rb") as handle:
                        got = pem_ders(handle.read())
                except OSError as exc:
                    return f"missing {os.path.basename(path)} ({exc.strerror})"
                if not got or got != self.expected[(iid, cat)]:
                    return f"wrong content in {os.path.basename(path)}"
        return ""


def fresh_dir(path):
    """An empty folder at path."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def retire_dir(path, trash):
    """An empty folder at path; what was there moves into trash, by rename
    (trash None: it is deleted, as fresh_dir does).

    Nothing is deleted between measured runs on a disk: on ext4 without a
    journal (this VM's root file system), the kernel's inode allocator checks
    each inode freed in the last minutes before reusing it (`recently_deleted`
    in fs/ext4/ialloc.c), under the directory's lock. Deleting the previous
    run's tens of thousands of files made the next run's file creations scan
    them: at 1000 instances, 2.1-2.4 s instead of 0.7-0.9 s, nearly all of it
    kernel time, measuring the cleanup rather than the tool. The trash goes
    at the end, with the work folder (bench/run's cleanup) or the --disk one.
    """
    if trash is None:
        fresh_dir(path)
        return
    if os.path.lexists(path):
        os.makedirs(trash, exist_ok=True)
        os.rename(path, os.path.join(trash, f"{os.path.basename(path)}-{next(RETIRED)}"))
    os.makedirs(path)


RETIRED = itertools.count()


def toml_str(value):
    """A TOML basic string."""
    return json.dumps(value)


def daemon_config(args, fixtures, count, out_link, state_dir, interval, jitter, keep=None):
    """The dds-certsync config for the first count instances.

    Compact, so that 10,000 instances fit in the 1 MiB a config file may
    have (about 100 bytes each with the realistic 36-character IDs): the
    instances as one array of inline tables, before the first table header,
    and output paths relative to the config's folder through out_link, a
    one-letter symlink to the output folder, with short file names
    (daemon_file_name).
    """
    lines = ["# Generated by bench/measure.py", "instances = ["]
    for k, iid in enumerate(fixtures.ids[:count], start=1):
        paths = [f"{toml_str(out_link + '/' + daemon_file_name(k, iid, c))}" for c in CATEGORIES]
        lines.append(f"{{id={toml_str(iid)},international={paths[0]},national={paths[1]}}},")
    lines += [
        "]",
        "",
        "[cloud]",
        'region = "cn-north-4"',
        f"project_id = {toml_str(args.project)}",
        f"endpoint = {toml_str(args.api)}",
        f"ca_file = {toml_str(args.ca)}",
        "",
        "[auth]",
        'method = "token"',
        f"token = {toml_str(TOKEN)}",
        "",
        "[sync]",
        f"interval = {toml_str(interval)}",
        f"jitter = {toml_str(jitter)}",
        'timeout = "30s"',
        "concurrency = 8",
        f"state_dir = {toml_str(state_dir)}",
    ]
    if keep is not None:
        lines.append(f"keep_previous = {toml_str(keep)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# the tools


class Tool:
    """A way of syncing N instances once, into an empty folder."""

    def __init__(self, name, label, args, fixtures, root=None):
        self.name = name
        self.label = label
        self.args = args
        self.fixtures = fixtures
        # On the disk (root None), retired folders go to a trash folder;
        # on tmpfs (a root under /dev/shm), where freed inodes cost nothing
        # later and memory is short, they are deleted.
        self.trash = None if root else os.path.join(args.disk_root, "trash")
        root = root or args.disk_root
        self.out = os.path.join(root, "out", name)
        self.state = os.path.join(root, "state", name)
        self.logs = os.path.join(args.work, "logs")
        os.makedirs(self.logs, exist_ok=True)

    def argv(self, count):
        """The command line that syncs the first count instances."""
        raise NotImplementedError

    def file_name(self, k, iid, cat):
        """The name of instance k's (from 1) file of category cat."""
        return default_file_name(k, iid, cat)

    def prepare(self):
        """Empty the output (and state) folders (see retire_dir), then flush
        the file systems.

        The sync keeps one run's unwritten data out of the next run: without
        it, a tool that fsyncs (dds-certsync) would also pay for what the run
        before it left dirty (through the shared journal, on a file system
        that has one, and the disk's queue on any).
        """
        retire_dir(self.out, self.trash)
        retire_dir(self.state, self.trash)
        os.sync()

    def run(self, count, timeout, with_rss=False):
        """One measured, checked run from an empty folder."""
        self.prepare()
        log_path = os.path.join(self.logs, f"{self.name}-{count}.stderr")
        result = run_measured(self.argv(count), scrubbed_env(), timeout, log_path, with_rss)
        if result.ok:
            problem = self.fixtures.check(self.out, count, self.file_name)
            if problem:
                result.ok = False
                result.error = f"{problem}; stderr: {tail(log_path)}"
        return result


class CurlFloor(Tool):
    """bench/curl-floor.sh: curl + jq + curl + mv per instance."""

    def argv(self, count):
        a = self.args
        return ["bash", a.curl_floor, a.api, a.project, a.ca, TOKEN, self.out, a.ids, str(count)]


class SdkScript(Tool):
    """bench/sdk_sync.py on huaweicloudsdkdds."""

    def argv(self, count):
        a = self.args
        return [a.sdk_python, a.sdk_script, a.api, a.project, a.ca, self.out, a.ids, str(count)]


class Daemon(Tool):
    """dds-certsync --once with a generated config."""

    def __init__(self, *rest, binary=None, keep=None):
        super().__init__(*rest)
        self.binary = binary or self.args.daemon
        # keep_previous for the config (None: the default, 30 days).
        self.keep = keep
        self.cfg_dir = os.path.join(os.path.dirname(os.path.dirname(self.out)), "cfg", self.name)
        os.makedirs(self.cfg_dir, exist_ok=True)
        link = os.path.join(self.cfg_dir, "o")
        if not os.path.islink(link):
            os.symlink(self.out, link)

    def config_path(self, count, interval="1h", jitter="0s", tag="once"):
        """Write (once) and return the config for count instances."""
        path = os.path.join(self.cfg_dir, f"{tag}-{count}.toml")
        if not os.path.exists(path):
            text = daemon_config(
                self.args, self.fixtures, count, "o", self.state, interval, jitter, self.keep
            )
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        return path

    def argv(self, count):
        return [self.binary, "--once", "--config", self.config_path(count)]

    def file_name(self, k, iid, cat):
        return daemon_file_name(k, iid, cat)


# --------------------------------------------------------------------------
# statistics and formatting


def summary(values):
    """median, min, max of a non-empty list (else Nones)."""
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def fmt_s(seconds):
    """Seconds as a readable duration."""
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_mib(kib):
    """KiB as MiB."""
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def fmt_ratio(value):
    """A ratio like 0.23x."""
    return "n/a" if value is None else f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def verdict(ok):
    """PASS / FAIL / n/a."""
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def reps_for(count, quick):
    """Repetitions for an instance count (more for the fast ones)."""
    if quick:
        return 5 if count <= 1 else 3 if count <= 100 else 2 if count <= 1000 else 1
    if count <= 1:
        return 21
    if count <= 10:
        return 11
    if count <= 100:
        return 7
    if count <= 1000:
        return 5
    return 3


def shown_path(path):
    """A path relative to the working folder when it lies below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def first_line(argv):
    """First line of a command's output, or 'n/a'."""
    try:
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=scrubbed_env(),
        )
    except OSError:
        return "n/a"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "n/a"


# --------------------------------------------------------------------------
# the measurements


def disk_flush_probe(folder, cycles=200, threads=8):
    """What a durable replacement costs on the file system of `folder`, the
    one the disk rows write to: `cycles` times, create a temporary file,
    write 1.5 KB, fsync it, rename it, fsync the directory (the steps of
    every output write), one thread alone and then `threads` at once (as
    `concurrency = 8` does). Returns the medians per fsync, in seconds."""
    probe = os.path.join(folder, "flush-probe")
    fresh_dir(probe)
    data = b"x" * 1500

    def cycle(name):
        tmp = os.path.join(probe, f".{name}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(probe, name))
        dfd = os.open(probe, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def one_thread(k, n, out):
        for i in range(n):
            t = time.perf_counter()
            cycle(f"f{k}-{i}")
            out.append(time.perf_counter() - t)

    alone = []
    one_thread("a", cycles, alone)
    start = time.perf_counter()
    workers = [
        threading.Thread(target=one_thread, args=(k, cycles // threads, [])) for k in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    together = (time.perf_counter() - start) / (cycles // threads * threads)
    shutil.rmtree(probe, ignore_errors=True)
    return {"fsync_alone_s": statistics.median(alone) / 2, "fsync_8_at_once_s": together / 2}


def file_system_of(folder):
    """The file system under folder, for the report: type, device, and for
    ext4 whether it has a journal ('' if findmnt cannot tell)."""
    found = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", folder],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0 or len(found.stdout.split()) != 2:
        return ""
    kind, source = found.stdout.split()
    text = f"{kind} on {source}"
    if kind == "ext4":
        device = os.path.basename(os.path.realpath(source))
        journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
        has = any(j.rsplit("-", 1)[0] == device for j in journals)
        text += " with a journal" if has else " without a journal"
    return text


def measure_once(args, tools, sizes, log):
    """Interleaved --once runs; returns {(tool, count): [Run]}."""
    results = {}
    plan = {count: reps_for(count, args.quick) for count in sizes}
    # Warm-up, not recorded: page cache, Python bytecode, TLS libraries.
    for tool in tools.values():
        for count in sizes:
            if (tool.name == "daemon" or count == min(sizes)) and runs_at(args, tool, count):
                tool.run(count, args.timeout)
    for rep in range(max(plan.values())):
        for count in sizes:
            if rep >= plan[count]:
                continue
            order = [t for t in tools.values() if runs_at(args, t, count)]
            shift = rep % len(order)
            order = order[shift:] + order[:shift]
            for tool in order:
                for with_rss in (False, True) if rep < RSS_REPS else (False,):
                    run = tool.run(count, args.timeout, with_rss)
                    results.setdefault((tool.name, count), []).append(run)
                    log(
                        f"rep {rep + 1}/{plan[count]} n={count:<5} {tool.name:<7}"
                        + (
                            f" peak RSS {fmt_mib(run.rss_kib)}"
                            if with_rss
                            else f" {fmt_s(run.wall):>10}"
                        )
                        + ("" if run.ok else f"  FAILED: {run.error}")
                    )
    return results


# The smallest instance count at which the keep_previous = "0s" variant runs.
KEEP0_MIN = 1000


def runs_at(args, tool, count):
    """Whether tool is measured at count: the curl floor up to --curl-max, the
    SDK script up to --sdk-max (beyond, each takes minutes per run)."""
    if tool.name == "curl":
        return count <= args.curl_max
    if tool.name == "sdk":
        return count <= args.sdk_max
    if tool.name == "daemon-k0":
        return count >= KEEP0_MIN
    return True


def wait_synced(fixtures, tool, count, proc, deadline):
    """Wait until tool.out holds the right files; '' or the problem."""
    problem = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"daemon exited with {proc.returncode}"
        problem = fixtures.check(tool.out, count, tool.file_name)
        if not problem:
            return ""
        time.sleep(0.05)
    return f"timed out: {problem}"


def measure_daemon(args, daemon, fixtures, count, interval, window, log, settle=2.0):
    """Run the daemon (not --once), let it sync, sample over window seconds."""
    tag = f"daemon-{interval}"
    cfg = daemon.config_path(count, interval=interval, jitter="0s", tag=tag)
    daemon.prepare()
    log_path = os.path.join(daemon.logs, f"{daemon.name}-{tag}-{count}.stderr")
    result = {"interval": interval, "count": count, "window_s": window}
    with open(log_path, "wb") as err:
        proc = subprocess.Popen(
            [daemon.binary, "--config", cfg],
            env=scrubbed_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    LIVE.add(proc)
    try:
        problem = wait_synced(fixtures, daemon, count, proc, time.monotonic() + 60)
        if problem:
            result["error"] = f"{problem}; stderr: {tail(log_path)}"
            return result
        # Let the first round finish; at rest, also let tokio's idle blocking
        # threads (10 s keep-alive) exit, so none disappears in the window.
        time.sleep(settle)
        api_before = count_lines(args.api_log)
        before = proc_sample(proc.pid)
        time.sleep(window)
        after = proc_sample(proc.pid)
        api_after = count_lines(args.api_log)
        sched_ms, exited = sched_delta_ms(before, after)
        result.update(
            rss_start_kib=before["rss_kib"],
            rss_end_kib=after["rss_kib"],
            hwm_kib=after["hwm_kib"],
            threads=after["threads"],
            elapsed_s=after["t"] - before["t"],
            cpu_ms_ticks=after["cpu_ms_ticks"] - before["cpu_ms_ticks"],
            cpu_ms_sched=sched_ms,
            thread_exited=exited,
            threads_start=before["threads"],
            api_calls=api_after - api_before,
            rounds=(api_after - api_before) / count,
        )
        log(
            f"{daemon.name} interval={interval}: RSS {fmt_mib(after['rss_kib'])},"
            f" CPU {result['cpu_ms_sched']:.1f} ms (schedstat) /"
            f" {result['cpu_ms_ticks']:.0f} ms (ticks) over {result['elapsed_s']:.1f} s,"
            f" {result['api_calls']} API calls"
        )
    finally:
        result["exit_code"] = stop(proc)
        result["stderr_tail"] = tail(log_path)
    return result


# --------------------------------------------------------------------------
# the report


def daemon_table(add, data):
    """The Markdown table for one daemon measurement."""
    if data.get("error"):
        add(f"Failed: {data['error']}\n")
        return
    add("| metric | value |")
    add("|---|---:|")
    add(f"| window | {data['elapsed_s']:.1f} s |")
    rss_pair = f"{fmt_mib(data['rss_start_kib'])} / {fmt_mib(data['rss_end_kib'])}"
    add(f"| VmRSS at start / end of window | {rss_pair} |")
    add(f"| VmHWM (peak RSS since start) | {fmt_mib(data['hwm_kib'])} |")
    add(f"| threads at start / end of window | {data['threads_start']} / {data['threads']} |")
    exited = " (a thread exited: undercounts)" if data["thread_exited"] else ""
    add(f"| CPU in window (schedstat, ns resolution) | {data['cpu_ms_sched']:.2f} ms{exited} |")
    add(f"| CPU in window (utime+stime, 10 ms ticks) | {data['cpu_ms_ticks']:.0f} ms |")
    add(f"| API calls in window | {data['api_calls']} |")
    if data["interval"] == "1s":
        rounds = data["rounds"]
        cpu = data["cpu_ms_ticks"] if data["thread_exited"] else data["cpu_ms_sched"]
        per = cpu / rounds if rounds else None
        add(f"| rounds in window (API calls / 10) | {rounds:.1f} |")
        per_text = "n/a" if per is None else f"{per:.2f} ms"
        add(f"| CPU per round (10 instances × 2 files) | {per_text} |")
    add(f"| exit code after SIGTERM | {data['exit_code']} |")
    add("")


def write_report(args, meta, once, daemons, launch, sizes, tools):
    """Markdown report; returns its text."""
    med = {}
    for key, runs in once.items():
        good = [r for r in runs if r.ok]
        med[key] = {
            "wall": summary([r.wall for r in good if r.rss_kib is None]),
            "rss": summary([r.rss_kib for r in good if r.rss_kib is not None]),
            "runs": sum(1 for r in good if r.rss_kib is None),
            "failed": len(runs) - len(good),
        }

    def wall(tool, count):
        return med.get((tool, count), {}).get("wall", (None,))[0]

    def ratio(num, den):
        return num / den if num is not None and den else None

    one = min(sizes)
    main_build = daemons[0] if daemons else {}
    rest = main_build.get("rest")
    size = main_build.get("size")
    out = []
    add = out.append
    add("# dds-certsync benchmark — latest run\n")
    add(
        f"{meta['date']} · {meta['mode']} run · host: {meta['host']}\n\n"
        f"Versions: {meta['versions']}\n"
    )

    # Targets.
    d1, c1, s1 = wall("daemon", one), wall("curl", one), wall("sdk", one)
    k1, k10 = 1000, 10000
    dbig, sbig = wall("daemon", k1), wall("sdk", k1)
    d10k = wall("daemon", k10)

    def peak_rss(count):
        return med.get(("daemon", count), {}).get("rss", (None, None, None))[2]

    rss_big, rss_10k = peak_rss(k1), peak_rss(k10)
    rest_rss = rest.get("rss_end_kib") if rest else None
    rest_cpu = None
    if rest and rest.get("elapsed_s"):
        cpu = rest["cpu_ms_ticks"] if rest["thread_exited"] else rest["cpu_ms_sched"]
        rest_cpu = cpu * 20.0 / rest["elapsed_s"]
    size_bytes = size.get("stripped") if size else None
    has_1000 = k1 in sizes
    has_10k = k10 in sizes

    def check(value, goal_ok):
        return None if value is None else goal_ok(value)

    targets = [
        (
            f"--once, {one} instance: dds-certsync / curl floor",
            fmt_ratio(ratio(d1, c1)),
            "≤ 0.10x",
            check(ratio(d1, c1), lambda v: v <= 0.10),
        ),
        (
            f"--once, {one} instance: SDK script / dds-certsync",
            fmt_ratio(ratio(s1, d1)),
            "≥ 10x",
            check(ratio(s1, d1), lambda v: v >= 10),
        ),
        (
            f"--once, {k1}×2: dds-certsync wall (median)",
            fmt_s(dbig),
            "≤ 1.0 s",
            check(dbig if has_1000 else None, lambda v: v <= 1.0),
        ),
        (
            f"--once, {k1}×2: dds-certsync peak RSS (max of runs)",
            fmt_mib(rss_big),
            "≤ 24 MiB",
            check(rss_big if has_1000 else None, lambda v: v <= 24 * 1024),
        ),
        (
            f"--once, {k1}×2: SDK script / dds-certsync",
            fmt_ratio(ratio(sbig, dbig)),
            "≥ 10x",
            check(ratio(sbig, dbig) if has_1000 else None, lambda v: v >= 10),
        ),
        (
            f"--once, {k10}×2: dds-certsync wall (median)",
            fmt_s(d10k),
            "≤ 4.0 s",
            check(d10k if has_10k else None, lambda v: v <= 4.0),
        ),
        (
            f"--once, {k10}×2: dds-certsync peak RSS (max of runs)",
            fmt_mib(rss_10k),
            "≤ 32 MiB",
            check(rss_10k if has_10k else None, lambda v: v <= 32 * 1024),
        ),
        (
            "daemon at rest (10 instances): VmRSS",
            fmt_mib(rest_rss),
            "≤ 8 MiB",
            check(rest_rss, lambda v: v <= 8 * 1024),
        ),
        (
            "daemon at rest: CPU per 20 s",
            "n/a" if rest_cpu is None else f"{rest_cpu:.2f} ms",
            "≤ 10 ms",
            check(rest_cpu, lambda v: v <= 10),
        ),
        (
            "release binary (stripped)",
            fmt_mib(None if size_bytes is None else size_bytes / 1024),
            "≤ 6 MiB",
            check(size_bytes, lambda v: v <= 6 * MIB),
        ),
    ]
    add("## Targets\n")
    add("| target | measured | goal | result |")
    add("|---|---:|---|---|")
    for name, measured, goal, ok in targets:
        add(f"| {name} | {measured} | {goal} | {verdict(ok)} |")
    missing = [str(n) for n in (k1, k10) if n not in sizes]
    if missing:
        add(f"\nThe targets at N = {' and '.join(missing)} are n/a: this run did not measure it.")
    add("")

    # One instance.
    add(f"## --once, {one} instance × 2 categories, from an empty folder\n")
    add("| tool | median | min | max | runs | peak RSS (median) |")
    add("|---|---:|---:|---:|---:|---:|")
    for tool in tools.values():
        m = med.get((tool.name, one))
        if not m:
            continue
        add(
            f"| {tool.label} | {fmt_s(m['wall'][0])} | {fmt_s(m['wall'][1])} |"
            f" {fmt_s(m['wall'][2])} | {m['runs']} | {fmt_mib(m['rss'][0])} |"
        )
    add(
        f"\nRatios of medians: dds-certsync / curl floor = {fmt_ratio(ratio(d1, c1))};"
        f" SDK script / dds-certsync = {fmt_ratio(ratio(s1, d1))};"
        f" SDK script / curl floor = {fmt_ratio(ratio(s1, c1))}.\n"
    )

    # Scaling.
    add("## Scaling: --once, N instances × 2 categories, from an empty folder\n")
    add("| N | tool | median | min | max | per instance | peak RSS median (max) | runs |")
    add("|---:|---|---:|---:|---:|---:|---:|---:|")
    for count in sizes:
        for tool in tools.values():
            m = med.get((tool.name, count))
            if not m:
                continue
            per = None if m["wall"][0] is None else m["wall"][0] / count
            fails = f" ({m['failed']} failed)" if m["failed"] else ""
            add(
                f"| {count} | {tool.label} | {fmt_s(m['wall'][0])} | {fmt_s(m['wall'][1])} |"
                f" {fmt_s(m['wall'][2])} | {fmt_s(per)} |"
                f" {fmt_mib(m['rss'][0])} ({fmt_mib(m['rss'][2])}) | {m['runs']}{fails} |"
            )
    add("")
    add(
        "Growth of the median wall time from one size to the next"
        " (N grows by the factor in brackets):\n"
    )
    for tool in tools.values():
        steps = []
        prev = None
        for count in sizes:
            cur = wall(tool.name, count)
            if cur is not None and prev is not None:
                steps.append(f"{prev[0]}→{count}: {cur / prev[1]:.2f}x (N ×{count // prev[0]})")
            if cur is not None:
                prev = (count, cur)
        if steps:
            add(f"- {tool.label}: " + "; ".join(steps))
    ratios = [
        f"N={c}: {fmt_ratio(ratio(wall('sdk', c), wall('daemon', c)))}"
        for c in sizes
        if ratio(wall("sdk", c), wall("daemon", c)) is not None
    ]
    if ratios:
        add("\nSDK script / dds-certsync: " + ", ".join(ratios) + ".")
    ratios = [
        f"N={c}: {fmt_ratio(ratio(wall('alt', c), wall('daemon', c)))}"
        for c in sizes
        if ratio(wall("alt", c), wall("daemon", c)) is not None
    ]
    if ratios:
        add(f"{tools['alt'].label} / {tools['daemon'].label}: " + ", ".join(ratios) + ".")
    ratios = [
        f"N={c}: {fmt_ratio(ratio(wall('daemon', c), wall('curl', c)))}"
        for c in sizes
        if ratio(wall("daemon", c), wall("curl", c)) is not None
    ]
    if ratios:
        add("dds-certsync / curl floor: " + ", ".join(ratios) + ".")
    add("")

    add(
        "Wall times include spawning the process from Python; spawning `/bin/true`"
        f" that way takes {fmt_s(launch['launch_overhead_s'])} (median). Peak RSS comes"
        f" from {RSS_REPS} extra runs per cell under `/usr/bin/time -f %M`.\n"
    )
    if launch.get("disk_fs"):
        add(
            f"The disk rows write to {launch['disk_fs']}. Outputs of earlier runs are moved"
            " aside, not deleted, until the end (see retire_dir in bench/measure.py).\n"
        )
    if "fsync_alone_s" in launch:
        alone, together = launch["fsync_alone_s"], launch["fsync_8_at_once_s"]
        # A first sync fsyncs each output and, once per instance, their folder.
        floor = ", ".join(f"N={c}: {fmt_s(c * 3 * together)}" for c in sizes if c >= 100)
        add(
            "The disk's own cost: one fsync in a durable replacement (temporary file"
            " written and fsynced, renamed, folder fsynced) takes"
            f" {fmt_s(alone)} alone and {fmt_s(together)} each with 8 at once"
            " (median, 200 replacements in the work folder). A first sync makes 3 fsyncs"
            " per instance (two outputs, their folder), so the disk rows cannot beat"
            f" {floor or 'n/a'} at this disk's pace, whatever the program does.\n"
        )

    # Daemon.
    if not daemons:
        add("## The daemon\n")
        add("Not measured (no dds-certsync binary with `--once`).\n")
    for build in daemons:
        for title, data in (
            (
                f'{build["label"]} at rest after syncing 10 instances (`interval = "1h"`)',
                build["rest"],
            ),
            (
                f"{build['label']} polling 10 instances every second"
                ' (`interval = "1s"`, `jitter = "0s"`)',
                build["poll"],
            ),
        ):
            add(f"## {title}\n")
            daemon_table(add, data)

    add("## Binary\n")
    for build in daemons:
        size = build["size"]
        where = shown_path(build["binary"])
        if size["stripped"] is not None:
            add(
                f"- {build['label']} (`{where}`): {size['file']:,} bytes as built;"
                f" {size['stripped']:,} bytes ({fmt_mib(size['stripped'] / 1024)})"
                " after `strip`."
            )
        else:
            add(f"- {build['label']} (`{where}`): {size['file']:,} bytes; `strip` failed.")
    if not daemons:
        add("Not measured (no dds-certsync binary).")
    add("")

    failures = [(k, r) for k, runs in once.items() for r in runs if not r.ok]
    if failures:
        add("## Failed runs (left out of the statistics)\n")
        for (tool, count), run in failures[:20]:
            add(f"- {tool}, N={count}: {run.error}")
        add("")

    add("## Method (short)\n")
    add(
        "nginx (Debian package) serves the DDS download-link API as static JSON and the"
        f" certificates as static files over HTTPS on 127.0.0.1 (server cert from a CA made by"
        f" the script; international = RSA-2048 self-signed, national = {args.national_kind}"
        " self-signed, a pool of 8 pairs copied per instance). Every run starts from an empty"
        " folder (and an empty state_dir for dds-certsync); runs are interleaved and the tool"
        " order rotates each repetition; one unrecorded warm-up run per tool first. Wall time"
        " is measured around spawn→exit; peak RSS is GNU time's %M from separate runs"
        " (for the shell pipeline: its largest single process). The 'files on tmpfs' rows"
        " run the same binary with its outputs under /dev/shm, to separate the file system's"
        " share. The curl floor and the SDK"
        " script work through the instances sequentially; dds-certsync uses `concurrency = 8`. See"
        " BENCHMARKS.md for the full method."
    )
    add(f"\nLoad average at start / end: {meta['load_start']} / {meta['load_end']}.")
    text = "\n".join(out) + "\n"
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(text)
    return text


# --------------------------------------------------------------------------


def main():
    """Parse arguments, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--ids", required=True)
    parser.add_argument("--www", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument(
        "--disk",
        help="a folder on the file system the disk rows write to (default: the work folder);"
        " a temporary folder is made in it and removed at the end",
    )
    parser.add_argument("--sizes", default="1 10 100 1000")
    parser.add_argument("--api-log", required=True)
    parser.add_argument("--curl-floor", required=True)
    parser.add_argument(
        "--curl-max", type=int, default=100, help="largest instance count for the curl floor"
    )
    parser.add_argument(
        "--sdk-max", type=int, default=1000, help="largest instance count for the SDK script"
    )
    parser.add_argument("--sdk-python", required=True)
    parser.add_argument("--sdk-script", required=True)
    parser.add_argument("--daemon", help="dds-certsync binary; omit to skip it")
    parser.add_argument(
        "--daemon-alt", help="a second dds-certsync build, measured alongside (A/B)"
    )
    parser.add_argument("--daemon-alt-label", default="dds-certsync (alt)")
    parser.add_argument("--national-kind", default="sm2")
    parser.add_argument("--nginx-version", default="n/a")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds before one run is killed"
    )
    parser.add_argument(
        "--configs-only",
        action="store_true",
        help="write the dds-certsync configs for every size, print them, measure nothing",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def log(message):
        print(
            f"[measure {time.strftime('%H:%M:%S', time.gmtime())}] {message}",
            file=sys.stderr,
            flush=True,
        )

    sizes = sorted({int(s) for s in args.sizes.split()})
    fixtures = Fixtures(args.ids, args.www)
    if max(sizes) > len(fixtures.ids):
        parser.error("more instances asked for than the fixtures hold")

    # A second dds-certsync variant writes to tmpfs, to tell the file
    # system's share (file creation, fsync) from the rest.
    shm = None
    if args.daemon and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        shm = tempfile.mkdtemp(prefix="dds-bench-", dir="/dev/shm")
    # Where the disk rows write: the work folder, or a folder of their own on
    # the file system --disk names (a journaling one, a network volume, ...).
    # (--configs-only prints configs for use by hand: they stay in the work folder.)
    own_disk = bool(args.disk) and not args.configs_only
    # Absolute: the daemon's configs name these folders from elsewhere.
    args.disk_root = (
        tempfile.mkdtemp(prefix="dds-bench-", dir=os.path.abspath(args.disk))
        if own_disk
        else args.work
    )
    try:
        return measure_all(args, parser, fixtures, sizes, shm, log)
    finally:
        if shm:
            shutil.rmtree(shm, ignore_errors=True)
        if own_disk:
            shutil.rmtree(args.disk_root, ignore_errors=True)


def measure_all(args, parser, fixtures, sizes, shm, log):
    """Everything after argument parsing; returns the exit status."""
    tools = {}
    builds = []  # (name prefix, label, binary); the first one is held to the targets
    if args.daemon:
        builds.append(("daemon", "dds-certsync", args.daemon))
    if args.daemon and args.daemon_alt:
        builds.append(("alt", args.daemon_alt_label, args.daemon_alt))
    for name, label, binary in builds:
        tools[name] = Daemon(name, f"{label} --once", args, fixtures, binary=binary)
        if shm:
            tools[f"{name}-tmpfs"] = Daemon(
                f"{name}-tmpfs",
                f"{label} --once, files on tmpfs",
                args,
                fixtures,
                shm,
                binary=binary,
            )
    if args.daemon:
        # The first build again without kept-certificate records (one file per
        # instance in state_dir, written before the outputs): their share of a
        # first sync from an empty folder, at the sizes where it shows.
        tools["daemon-k0"] = Daemon(
            "daemon-k0",
            'dds-certsync --once, keep_previous = "0s"',
            args,
            fixtures,
            binary=args.daemon,
            keep="0s",
        )
    tools["curl"] = CurlFloor("curl", "curl floor (curl+jq+mv)", args, fixtures)
    tools["sdk"] = SdkScript("sdk", "SDK script (huaweicloudsdkdds)", args, fixtures)

    if args.configs_only:
        daemon = Daemon("daemon", "dds-certsync --once", args, fixtures)
        for count in sizes:
            print(daemon.config_path(count))
        count = min(10, len(fixtures.ids))
        for interval in ("1h", "1s"):
            print(daemon.config_path(count, interval, "0s", f"daemon-{interval}"))
        return 0

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "host": f"{os.cpu_count()} CPUs, Linux {platform.release()}",
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": "; ".join(
            [
                first_line([args.daemon, "--version"]) if args.daemon else "dds-certsync: n/a",
                first_line(["curl", "--version"]).split(" (")[0],
                first_line(["jq", "--version"]),
                first_line(
                    [
                        args.sdk_python,
                        "-c",
                        "import importlib.metadata as m; print('huaweicloudsdkdds',"
                        " m.version('huaweicloudsdkdds'), '/ requests', m.version('requests'))",
                    ]
                ),
                first_line([args.sdk_python, "--version"]),
                f"nginx {args.nginx_version}",
                first_line(["openssl", "version"]),
            ]
        ),
    }

    log(f"--once runs, sizes {sizes}, tools {list(tools)}")
    once = measure_once(args, tools, sizes, log)

    # What spawning a process costs by itself (part of every wall time).
    overhead = []
    for _ in range(11):
        run = run_measured(
            ["/bin/true"], scrubbed_env(), 30, os.path.join(args.work, "logs", "true.stderr")
        )
        overhead.append(run.wall)
    launch = {"launch_overhead_s": statistics.median(overhead)}
    log("timing durable replacements on the disk rows' file system")
    launch.update(disk_flush_probe(args.disk_root))
    launch["disk_fs"] = file_system_of(args.disk_root)

    daemons = []
    window = 5.0 if args.quick else 20.0
    count = min(10, len(fixtures.ids))
    for name, label, binary in builds:
        daemon = tools[name]
        rest = measure_daemon(args, daemon, fixtures, count, "1h", window, log, settle=12.0)
        poll = measure_daemon(args, daemon, fixtures, count, "1s", window, log)
        stripped = os.path.join(args.work, f"{name}.stripped")
        shutil.copyfile(binary, stripped)
        stripped_ok = (
            subprocess.run(["strip", stripped], check=False, capture_output=True).returncode == 0
        )
        size = {
            "file": os.path.getsize(binary),
            "stripped": os.path.getsize(stripped) if stripped_ok else None,
        }
        daemons.append(
            {
                "name": name,
                "label": label,
                "binary": binary,
                "rest": rest,
                "poll": poll,
                "size": size,
            }
        )

    meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    raw = {
        "meta": meta,
        "once": {f"{t}:{c}": [r.__dict__ for r in runs] for (t, c), runs in once.items()},
        "daemons": daemons,
        "launch": launch,
    }
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as handle:
        json.dump(raw, handle, indent=1)
    write_report(args, meta, once, daemons, launch, sizes, tools)
    failed = sum(1 for runs in once.values() for r in runs if not r.ok)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
