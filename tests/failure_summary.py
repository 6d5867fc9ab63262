#!/usr/bin/env python3
"""Read a `molecule test` log: its log is thousands of lines and ends with the destroy stage, so a
reader who sees only the end of the output would otherwise not learn which test or task failed.

    tests/failure_summary.py LOG [JUNIT_XML]     print, last, what made the run fail (exits 0)
    tests/failure_summary.py --check-stage LOG   fail if the check stage ignored an error

The first form prints the tasks that failed without `ignore_errors` (host, task, message), then
each failed test's assertion lines ("E   ..."), then the failed tests, then the exception that
ended each Python traceback (a crash of molecule or of a tool). Molecule wraps long lines,
so the tests are read from the verifier's JUnit XML where it exists, and from the log otherwise.

The second form asserts that `--check` on fresh hosts (molecule's check stage) is clean: a task
that fails there and is ignored hides what the real run would do, and would hide a real error too.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# molecule 25 frames each stage's output with a box-drawing border
FRAME = re.compile(r"^\s*[\u2502\u250c\u2514]\s?")
MAX_ASSERTION_LINES = 12
MAX_TASK_LINES = 6


def read_log(path):
    """The log's lines without molecule's colours and frame."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [FRAME.sub("", ANSI.sub("", line.rstrip("\n"))) for line in f]


def failed_tasks(lines, ignored=False):
    """`fatal:` results, with the task they belong to: those not followed by `...ignoring`, or,
    with ignored=True, only those that were."""
    out, task = [], ""
    for i, line in enumerate(lines):
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        if not re.match(r"^fatal: \[[^\]]+\]: (FAILED|UNREACHABLE)", line):
            continue
        following = []
        for nxt in lines[i + 1:i + 40]:
            if nxt.startswith(("fatal:", "ok:", "changed:", "skipping:", "TASK [", "PLAY ", "RUNNING HANDLER")):
                break
            following.append(nxt)
        if any(n.strip() == "...ignoring" for n in following) != ignored:
            continue
        body = [n for n in following if n.strip() and n.strip() != "..."]
        out.append([task, line] + body[:MAX_TASK_LINES])
    return out


def failed_tests(lines):
    assertions, summary, in_summary = [], [], False
    for line in lines:
        if re.match(r"^=+ short test summary info =+$", line):
            in_summary = True
            continue
        if in_summary:
            if line.startswith("=") or not line.strip():
                in_summary = False
            elif line.startswith(("FAILED ", "ERROR ")):
                summary.append(line)
            continue
        if line.startswith("E   ") and len(assertions) < MAX_ASSERTION_LINES:
            assertions.append(line)
    return assertions, summary


def failed_tests_from_junit(path):
    assertions, summary = [], []
    for case in ET.parse(path).getroot().iter("testcase"):
        for outcome in list(case.findall("failure")) + list(case.findall("error")):
            name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
            kind = "FAILED" if outcome.tag == "failure" else "ERROR"
            message = (outcome.get("message") or "").strip().splitlines()
            summary.append("%s %s - %s" % (kind, name, message[0] if message else ""))
            for line in (outcome.text or "").splitlines():
                if line.startswith("E   ") and len(assertions) < MAX_ASSERTION_LINES:
                    assertions.append(line)
    return assertions, summary


def stage(lines, name):
    """The lines molecule printed while it ran one stage (check, converge, ...)."""
    start = next((i for i, line in enumerate(lines) if re.search(r"\u279c %s: Executing" % name, line)), None)
    if start is None:
        return None
    end = next((i for i, line in enumerate(lines[start:], start) if re.search(r"\u279c %s: Executed" % name, line)),
               len(lines))
    return lines[start:end]


def check_stage(path):
    lines = stage(read_log(path), "check")
    if lines is None:
        print("%s: no check stage in the log" % path)
        return 1
    ignored = failed_tasks(lines, ignored=True)
    for block in ignored:
        print("\n".join(block))
    print("%s: the check stage ignored %d failed task result(s)" % (path, len(ignored)))
    return 1 if ignored else 0


def tracebacks(lines):
    """The exception line closing each Python traceback (molecule or a tool crashed)."""
    out, inside = [], False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            inside = True
        elif inside and re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*", line):
            out.append(line)
            inside = False
    return out


def main(path, junit=None):
    lines = read_log(path)
    tasks = failed_tasks(lines)
    if junit and os.path.exists(junit):
        assertions, summary = failed_tests_from_junit(junit)
    else:
        assertions, summary = failed_tests(lines)
    print("\n==== what failed (from %s) ====" % path)
    for block in tasks:
        print("\n".join(block))
    if assertions:
        print("-- assertions:")
        print("\n".join(assertions))
    if summary:
        print("-- failed tests:")
        print("\n".join(summary))
    crashes = tracebacks(lines)
    if crashes:
        print("-- tracebacks:")
        print("\n".join(crashes))
    if not (tasks or assertions or summary or crashes):
        print("no failed task or test found in the log; read it whole")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check-stage"]:
        sys.exit(check_stage(sys.argv[2]))
    sys.exit(main(*sys.argv[1:3]))
