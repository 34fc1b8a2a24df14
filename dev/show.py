#!/usr/bin/env python3
"""Prints flakefleet's JSON answers (read from stdin) for people, for the demo."""

import json
import sys


def release_line(r):
    rollback = f"  rollback_of={r['rollback_of']}" if r.get("rollback_of") else ""
    counts = {}
    for i in r.get("instances", []):
        counts[i["detail"]] = counts.get(i["detail"], 0) + 1
    per_instance = ", ".join(f"{n} {d}" for d, n in sorted(counts.items())) or "-"
    return f"{r['id']}  {r['kind']:<8} {r['status']:<12} {r['flakeref']}{rollback}\n{'':28}instances: {per_instance}" + (
        f"\n{'':28}reason: {r['status_reason']}" if r.get("status_reason") else "")


def main():
    raw = sys.stdin.read()
    try:
        answer = json.loads(raw)
    except json.JSONDecodeError:
        print(raw)
        return
    if "releases" in answer:
        for r in answer["releases"]:
            print(release_line(r))
    elif "release" in answer:
        print(release_line(answer["release"]))
    elif "reconcile" in answer:
        rec = answer["reconcile"]
        print(f"reconcile: {rec['outcome']}")
        if rec.get("release"):
            print(release_line(rec["release"]))
    elif "error" in answer:
        print(f"error {answer['error']}: {answer['message']}")
    else:
        print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    main()
