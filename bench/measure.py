"""`python -m bench.measure OUT.json -- COMMAND...`: run COMMAND and write its wall time,
CPU time and peak RSS to OUT.json; exit with its exit code.

The bench starts measured commands through this small process on purpose: on Linux a child
forked from a large process keeps the parent's RSS high-water mark across exec (the old
address space's peak is recorded at exec), so `ru_maxrss` of a child of the bench process,
which holds the sandboxes' data, would report the bench's memory instead of the child's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m bench.measure OUT.json -- COMMAND...", file=sys.stderr)
        return 2
    output, command = argv[0], argv[2:]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = code = os.waitstatus_to_exitcode(status)
    with open(output, "w", encoding="utf-8") as out:
        json.dump(
            {
                "seconds": seconds,
                "maxRssKiB": usage.ru_maxrss,
                "cpuSeconds": usage.ru_utime + usage.ru_stime,
                "exitCode": code,
            },
            out,
        )
    return code if code >= 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
