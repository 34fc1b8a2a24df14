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
    waves = ""
    if r.get("rollout") and r["rollout"]["waves"]:
        waves = f"  waves: {'+'.join(str(len(w['instance_ids'])) for w in r['rollout']['waves'])}"
    return f"{r['id']}  {r['kind']:<8} {r['status']:<12} {r['flakeref']}{rollback}\n{'':28}instances: {per_instance}{waves}" + (
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
        if rec.get("launched"):
            print(f"  launched: {' '.join(rec['launched'])}")
        if rec.get("reapplied"):
            print(f"  reapplied: {' '.join(rec['reapplied'])}")
        if rec.get("skipped"):
            print(f"  skipped: {rec['skipped']}")
        if rec.get("release"):
            print(release_line(rec["release"]))
    elif "fleet" in answer and isinstance(answer["fleet"], dict):
        fleet = answer["fleet"]
        print(f"fleet {fleet['fleet']} (tag {fleet['target_tag']['key']}={fleet['target_tag']['value']})")
        print(f"last good release: {fleet.get('last_good_release_id') or '-'}")
        print(f"halted: {fleet['halted']['reason'] if fleet.get('halted') else 'no'}")
        rollout = fleet.get("rollout")
        print("rollout in progress: " + (f"{rollout['release_id']} wave {rollout['wave']}, "
              f"{rollout['succeeded']} succeeded, {rollout['failed']} failed, {rollout['pending']} pending" if rollout else "none"))
        if fleet.get("desired_release"):
            print("desired release:")
            print(release_line(fleet["desired_release"]))
    elif "error" in answer:
        print(f"error {answer['error']}: {answer['message']}")
    else:
        print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    main()
