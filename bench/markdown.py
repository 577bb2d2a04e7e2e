"""`python -m bench.markdown RESULTS.json`: the figures of a run as Markdown tables, for
docs/benchmarks.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    lines = [f"Run started {report['startedAt']} (`{report['command']}`)", ""]
    machine = report["machine"]
    lines.append(
        f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memoryGiB']} GiB, "
        f"Python {machine['python']}, Linux {machine['kernel']}; load average at start "
        f"{machine['loadAverageAtStart']}, at end {machine.get('loadAverageAtEnd')}."
    )
    lines.append("")
    lines.append(
        "| # | case | wall s | sync CPU s | rec/s | peak RSS MiB | key figure | target | met |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for scenario in report["scenarios"]:
        if scenario.get("error"):
            lines.append(f"| {scenario['number']} | error | | | | | {scenario['error']} | | |")
        for row in scenario["rows"]:
            figures = row["figures"]
            key = row.get("note") or ""
            met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
            lines.append(
                f"| {row['scenario']} | {row['case']} | {_value(figures.get('seconds'))} | "
                f"{_value(figures.get('cpuSeconds'))} | "
                f"{_value(figures.get('recordsPerSecond'))} | "
                f"{_value(figures.get('peakRssMiB'))} | {key} | {row['target']} | {met} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.markdown RESULTS.json", file=sys.stderr)
        return 2
    print(render(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
