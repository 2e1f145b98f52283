#!/usr/bin/env python3
"""Writes the fault rows that tests/tests/faults.rs left (one JSON file per fault, in the
directory given) into the report (docs/reliability.md), between its markers
`<!-- faults:begin -->` and `<!-- faults:end -->`; the rest of the report is left as it is.

    python3 scripts/faults-report.py target/faults docs/reliability.md
"""
import json
import pathlib
import sys

BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
ORDER = ["isolate-node", "isolate-past-backlog", "split-2-1", "gateway-cut-from-redis", "one-way-loss", "slow-link",
         "pause-node", "kill-9-restart", "full-disk", "vrrp-failover"]


def outcomes(d):
    return ", ".join(f"{k}: {v}" for k, v in d.items()) or "–"


def table(rows):
    out = ["| fault | write requests | points acknowledged | lost | duplicated | phantom "
           "| writes by answer | queries by answer | converged after |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["fault"] == "vrrp-failover":
            continue
        out.append(
            f"| {r['fault']} | {r['write_requests']} | {r['acknowledged_points']} | {r['lost']} "
            f"| {r['duplicated']} | {r['phantom']} | {outcomes(r['writes'])} "
            f"| {outcomes(r['reads'])} | {r['converge_ms']} ms |")
    out.append("")
    for r in rows:
        out.append(f"**{r['fault']}**: {r['description']}.")
        out.append("")
        seen = r["observed"]
        if seen:
            out.append(f"- seen as the fault began: {seen[0]}")
        if len(seen) > 1:
            out.append(f"- seen as it ended: {seen[-1]}")
        for n in r["notes"]:
            out.append(f"- {n}")
        out.append("")
    return "\n".join(out)


def main():
    src, report = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    rows = [json.loads(p.read_text()) for p in sorted(src.glob("*.json"))]
    rows.sort(key=lambda r: ORDER.index(r["fault"]) if r["fault"] in ORDER else len(ORDER))
    if not rows:
        sys.exit(f"no fault rows in {src}")
    text = report.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        sys.exit(f"{report} has no {BEGIN} ... {END} section")
    text = text[: start + len(BEGIN)] + "\n" + table(rows) + "\n" + text[end:]
    report.write_text(text)
    print(f"{report}: {len(rows)} faults")


if __name__ == "__main__":
    main()
