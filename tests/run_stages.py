#!/usr/bin/env python3
"""Run make targets in concurrent groups, keep each one's log, time everything, report at the end.

    tests/run_stages.py --group "lint sanity unit integration" --group molecule-default --group molecule-trixie

The targets of one group run one after the other (the group stops at the first failure); the groups
run at the same time. Each target's output goes to .cache/logs/stage-<target>.log and, prefixed with
[<target>], to this process's output as it comes. Molecule's actions (create, converge, verify, ...)
are timed from their "➜ <action>: Executing" lines.

At the end it prints one line per target (result and duration), the durations of each molecule
action, and writes all of it to .cache/logs/stages.json; the exit status is 1 when a target failed.
A target's own failure summary (e.g. tests/failure_summary.py for molecule) is the last thing its
log holds, so it is printed again, last, for every target that failed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ACTION = re.compile(r"(\w[\w-]*) \u279c (\w+): (Executing|Executed: (Successful|Failed))")
SUMMARY_MARK = "=== what failed"
LOCK = threading.Lock()


def fmt(seconds):
    return "%dm%02ds" % divmod(int(round(seconds)), 60)


class Stage(object):
    def __init__(self, target, log_dir, make):
        self.target = target
        self.log = os.path.join(log_dir, "stage-%s.log" % target)
        self.make = make
        self.rc = None
        self.start = self.end = None
        self.actions = []      # [action, seconds]
        self._open = {}

    def run(self, t0):
        self.start = time.monotonic()
        with open(self.log, "w", encoding="utf-8", errors="replace") as log:
            proc = subprocess.Popen(self.make + [self.target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", bufsize=1)
            for line in proc.stdout:
                log.write(line)
                self._watch(ANSI.sub("", line))
                with LOCK:
                    sys.stdout.write("[%s %s] %s" % (self.target, fmt(time.monotonic() - t0), line))
                    sys.stdout.flush()
            self.rc = proc.wait()
        self.end = time.monotonic()
        return self.rc

    def _watch(self, line):
        match = ACTION.search(line)
        if not match:
            return
        action, state = match.group(2), match.group(3)
        if state == "Executing":
            self._open[action] = time.monotonic()
        elif action in self._open:
            self.actions.append([action, round(time.monotonic() - self._open.pop(action), 1)])

    def summary_tail(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            text = f.read()
        i = text.rfind(SUMMARY_MARK)
        return text[i:] if i >= 0 else "\n".join(text.splitlines()[-60:])


def run_group(stages, t0):
    for stage in stages:
        if stage.run(t0) != 0:
            break


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", required=True, help="space-separated make targets, in order")
    parser.add_argument("--log-dir", default=".cache/logs")
    parser.add_argument("--make", default=os.environ.get("MAKE", "make"))
    args = parser.parse_args(argv)
    os.makedirs(args.log_dir, exist_ok=True)
    make = [args.make, "--no-print-directory"]
    groups = [[Stage(t, args.log_dir, make) for t in g.split()] for g in args.group]
    t0 = time.monotonic()
    threads = [threading.Thread(target=run_group, args=(g, t0)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.monotonic() - t0

    stages = [s for g in groups for s in g]
    report = {"total_seconds": round(total, 1), "stages": []}
    lines = ["", "=== stages (groups run at the same time; %s in all)" % fmt(total)]
    for s in stages:
        if s.rc is None:
            lines.append("  %-20s not run (an earlier target of its group failed)" % s.target)
            report["stages"].append({"target": s.target, "result": "not run"})
            continue
        took = s.end - s.start
        result = "passed" if s.rc == 0 else "FAILED (rc %d)" % s.rc
        lines.append("  %-20s %-14s %8s   from %s to %s" % (s.target, result, fmt(took), fmt(s.start - t0), fmt(s.end - t0)))
        if s.actions:
            lines.append("  %-20s %s" % ("", ", ".join("%s %s" % (a, fmt(d)) for a, d in s.actions)))
        report["stages"].append({"target": s.target, "result": result, "seconds": round(took, 1),
                                 "start": round(s.start - t0, 1), "actions": s.actions, "log": s.log})
    with open(os.path.join(args.log_dir, "stages.json"), "w") as f:
        json.dump(report, f, indent=2)
    failed = [s for s in stages if s.rc not in (0, None)]
    for s in failed:
        lines.append("")
        lines.append("=== %s failed; the end of %s:" % (s.target, s.log))
        lines.append(s.summary_tail().rstrip())
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
