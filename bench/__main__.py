"""`uv run python -m bench [--scenario N ...] [--large] [--size N] [--output PATH]`.

Runs the benchmark scenarios, prints a table and writes the figures as JSON (default
bench/results/<UTC timestamp>.json). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import scenarios
from bench.common import REPO_ROOT, BackgroundLoop, ScenarioResult, machine

SCENARIOS = {
    1: scenarios.scenario_initial,
    2: scenarios.scenario_rate_limited,
    3: scenarios.scenario_incremental,
    4: scenarios.scenario_postgres,
    5: scenarios.scenario_memory,
    6: scenarios.scenario_operator,
}
# Scenario 3 continues scenario 1's apps (kept running meanwhile).
ORDER = (1, 2, 4, 5, 6, 3)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenario",
        type=int,
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--large", action="store_true", help="add the large sizes")
    parser.add_argument("--size", type=int, help="one size instead of the scenario's defaults")
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/<ts>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    wanted = set(args.scenario or SCENARIOS)
    if 3 in wanted:
        wanted.add(1)
    started = datetime.now(UTC)
    output = args.output or REPO_ROOT / "bench" / "results" / (
        started.strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    report: dict[str, Any] = {
        "startedAt": started.isoformat(),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "options": {"large": args.large, "size": args.size},
        "scenarios": [],
    }
    loop = BackgroundLoop()
    context = scenarios.Context(loop, scenarios.Options(large=args.large, size=args.size))
    results: list[ScenarioResult] = []
    try:
        for number in ORDER:
            if number not in wanted or number not in SCENARIOS:
                continue
            console.print(f"[bold]scenario {number}[/bold] ...")
            began = time.perf_counter()
            try:
                result = SCENARIOS[number](context)
            except Exception as error:  # a benchmark that breaks is reported, not hidden
                result = ScenarioResult(number, f"scenario {number}", error=repr(error))
                console.print(traceback.format_exc())
            result.details["scenarioSeconds"] = round(time.perf_counter() - began, 1)
            results.append(result)
            console.print(render([result]))
    finally:
        for world in context.worlds.values():
            world.stop()
        context.close()
        loop.close()
    report["finishedAt"] = datetime.now(UTC).isoformat()
    report["machine"]["loadAverageAtEnd"] = [round(v, 2) for v in __import__("os").getloadavg()]
    report["scenarios"] = [asdict(result) for result in sorted(results, key=lambda r: r.number)]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(render(sorted(results, key=lambda r: r.number)))
    console.print(f"figures written to {output}")
    return 0


KEY_FIGURES = (
    "seconds",
    "recordsPerSecond",
    "peakRssMiB",
    "apiCallsVsMinimum",
    "ceilingPercent",
    "callsVsInitial",
    "timeRatio",
    "readySeconds",
    "requestsPerConnection",
)


def render(results: list[ScenarioResult]) -> Table:
    table = Table(title="Datasync benchmarks", show_lines=False)
    for column in ("#", "case", "s", "rec/s", "peak RSS MiB", "key figure", "target", "met"):
        table.add_column(column)
    for result in results:
        if result.error:
            table.add_row(str(result.number), "ERROR", "", "", "", result.error[:80], "", "")
            continue
        for row in result.rows:
            figures = row.figures
            key = ", ".join(
                f"{name}={figures[name]}"
                for name in KEY_FIGURES[3:]
                if figures.get(name) is not None
            )
            if row.note:
                key = f"{key} ({row.note})" if key else row.note
            met = "" if row.met is None else ("yes" if row.met else "NO")
            table.add_row(
                row.scenario,
                row.case,
                _text(figures.get("seconds")),
                _text(figures.get("recordsPerSecond")),
                _text(figures.get("peakRssMiB")),
                key,
                row.target,
                met,
            )
    return table


def _text(value: Any) -> str:
    return "" if value is None else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
