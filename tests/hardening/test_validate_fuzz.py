"""`datasync validate` on generated hostile files (alias bombs, deep nesting, huge strings,
odd Unicode, invalid UTF-8, Python tags, hostile manifests): a clear error, exit code 1,
never a traceback, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasync.cli import cli
from tests.hardening.hostile import ODD_TEXT, hostile_manifests

MEMORY_BOUND = 150 * 2**20  # bytes allocated at peak while validating one file
HEADER = "apiVersion: datasync.io/v1alpha1\nkind: DataSyncConnection\nmetadata: {name: x}\n"


def billion_laughs(width: int, levels: int) -> str:
    lines = [f'l0: &l0 ["{"lol" * 10}"]']
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return HEADER + "spec:\n  " + "\n  ".join(lines) + "\n"


def shared_huge_string(copies: int) -> str:
    refs = "\n".join(f"  k{i}: *big" for i in range(copies))
    return HEADER + f'spec:\n  goal: &big "{"A" * 2_000_000}"\n{refs}\n'


def deep_flow(levels: int) -> str:
    return HEADER + "spec: " + "[" * levels + "]" * levels + "\n"


def deep_block(levels: int) -> str:
    return HEADER + "spec:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(levels))


KNOWN_BAD = {
    "alias bomb": billion_laughs(10, 9),
    "narrow alias bomb": billion_laughs(3, 30),
    "shared huge string": shared_huge_string(90),
    "deep flow": deep_flow(20_000),
    "deep block": deep_block(400),
    "python tag": HEADER + "spec: !!python/object/apply:os.system ['echo pwned']\n",
    "merge bomb": HEADER
    + "a: &a {x: 1}\n"
    + "spec:\n"
    + "".join(f"  m{i}: {{<<: [*a, *a, *a]}}\n" for i in range(60)),
    "huge file": HEADER + "spec:\n  goal: " + "B" * 16_000_000 + "\n",
    "control characters": HEADER + "spec:\n  goal: \x00\x07\x1b[31m\n",
    "tabs": HEADER + "spec:\n\tdirection: TwoWay\n",
    "not a mapping": HEADER + "spec: [1, 2, 3]\n",
    "spec is null": HEADER + "spec:\n",
    "huge key": HEADER + "spec:\n  " + "k" * 100_000 + ": 1\n",
}


def validate(tmp_path: Path, content: str | bytes) -> tuple[int, str]:
    """(exit code, output) of `datasync validate` run in this process."""
    path = tmp_path / "manifest.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def test_known_hostile_files_are_refused_clearly(tmp_path: Path, tally: Counter[str]) -> None:
    for label, content in KNOWN_BAD.items():
        code, output = validate(tmp_path, content)
        assert code == 1, (label, output[:300])
        assert "Traceback" not in output, label
        for filler in ("A" * 200, "B" * 200, "k" * 200, "lol" * 70):
            assert filler not in output, f"{label}: the error echoes the input"
        tally["inputs_tried"] += 1
    code, output = validate(tmp_path, b"apiVersion: \xff\xfe\xfa\n")
    assert code == 1 and "cannot read" in output and "Traceback" not in output


def test_hostile_files_in_a_real_process_stay_small(tmp_path: Path) -> None:
    """All of them through the installed `datasync` command at once; its peak memory is
    measured by the kernel (peak RSS of the only child of a fresh wrapper process)."""
    datasync = str(Path(sys.executable).with_name("datasync"))
    paths = []
    for number, content in enumerate(KNOWN_BAD.values()):
        paths.append(tmp_path / f"hostile-{number}.yaml")
        paths[-1].write_text(content)
    wrapper = (
        "import resource, subprocess, sys, json\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps([r.returncode, r.stdout + r.stderr,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, datasync, "validate", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    code, output, max_rss_kib = json.loads(done.stdout)
    assert code == 1 and "Traceback" not in output, output[-500:]
    for path in paths:
        assert f"{path}: " in output and f"{path}: valid" not in output, path
    assert max_rss_kib < 300 * 1024, f"peak RSS {max_rss_kib / 1024:.0f} MiB"


@st.composite
def hostile_files(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["manifest-yaml", "manifest-json", "text", "bytes", "anchors"]))
    if kind.startswith("manifest"):
        manifest, _ = draw(hostile_manifests())
        if kind == "manifest-json":
            return json.dumps(manifest)
        return yaml.safe_dump(manifest, allow_unicode=draw(st.booleans()))
    if kind == "text":
        return HEADER + "spec:\n  direction: " + draw(ODD_TEXT) + "\n"
    if kind == "anchors":
        return billion_laughs(draw(st.integers(2, 12)), draw(st.integers(2, 12)))
    return draw(st.binary(min_size=1, max_size=2000))


def test_generated_hostile_files_never_crash_the_validator(
    tmp_path: Path, tally: Counter[str]
) -> None:
    tried = Counter[str]()
    tracemalloc.start()  # bounds the memory of each generated file

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(hostile_files())
    def check(content: str | bytes) -> None:
        tracemalloc.reset_peak()
        code, output = validate(tmp_path, content)
        peak = tracemalloc.get_traced_memory()[1]
        assert "Traceback" not in output
        assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB"
        if code == 0:
            assert ": valid (" in output or "no DataSyncConnection" in output, output[:300]
        else:
            assert code == 1 and output.strip(), output[:300]
        tried[str(code)] += 1

    try:
        check()
    finally:
        tracemalloc.stop()
    tally["inputs_tried"] += sum(tried.values())
    assert tried["1"] > sum(tried.values()) // 2, tried
