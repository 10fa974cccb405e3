#!/usr/bin/env python3
"""Verdict on an Autobahn|Testsuite fuzzingclient report (reports/index.json).

usage: summary.py REPORT_DIR WSTEST_LOG

A case passes when its `behavior` is OK, NON-STRICT, INFORMATIONAL or UNIMPLEMENTED (the last:
a permessage-deflate offer we do not accept); anything else fails. A case that wstest announced
("Cases = [...]" in its log) but that is missing from the report also fails: wstest silently
drops the remaining cases once a connect fails, e.g. after the server died.

Exit status: 0 when nothing failed, 1 when something did, 2 when there is no usable report.
The last line is always "autobahn: N ok, M failed, K non-strict".
"""
import ast
import json
import os
import re
import sys
from collections import Counter

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}


def case_key(cid):
    return tuple(int(p) if p.isdigit() else p for p in cid.split("."))


def announced(log_path):
    with open(log_path, errors="replace") as f:
        for line in f:
            m = re.match(r"\s*Cases = (\[.*\])\s*$", line)
            if m:
                return {str(c) for c in ast.literal_eval(m.group(1))}
    return None


def main(report_dir, log_path):
    try:
        with open(os.path.join(report_dir, "index.json")) as f:
            index = json.load(f)
        (agent, cases), = index.items()
    except (OSError, ValueError) as e:
        print("summary: no usable report in {}: {}".format(report_dir, e))
        print("autobahn: 0 ok, 1 failed, 0 non-strict")
        return 2
    counts = Counter(c.get("behavior") for c in cases.values())
    failed = sorted((cid for cid, c in cases.items() if c.get("behavior") not in PASSING), key=case_key)
    expected = announced(log_path)
    if expected is None:
        print("summary: the wstest log does not list its cases; cannot check for missing ones")
        print("autobahn: 0 ok, 1 failed, 0 non-strict")
        return 2
    missing = sorted(expected - set(cases), key=case_key)
    print("agent {}: {} cases in report, {} announced".format(agent, len(cases), len(expected)))
    for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])):
        print("  {:<14} {}".format(str(k), v))
    for cid in failed:
        c = cases[cid]
        print("  FAILED {}: behavior={} close={} code={}".format(
            cid, c.get("behavior"), c.get("behaviorClose"), c.get("remoteCloseCode")))
    if missing:
        print("  MISSING ({}): {}".format(len(missing), " ".join(missing[:40])))
    n_failed = len(failed) + len(missing)
    print("autobahn: {} ok, {} failed, {} non-strict".format(counts["OK"], n_failed, counts["NON-STRICT"]))
    return 0 if n_failed == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
