"""The baseline: what PostgreSQL itself does on this machine (pgbench TPC-B, 8 clients)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from bench import machine, scratch
from bench.report import say

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_PROGRESS = re.compile(r"^progress: .*$", re.MULTILINE)


@dataclass(frozen=True)
class PgbenchSpec:
    scale: int = 8
    clients: int = 8
    threads: int = 2
    seconds: int = 15


def parse_tps(output: str) -> float:
    match = _TPS.search(output)
    if match is None:
        raise RuntimeError(f"no tps line in pgbench output:\n{output}")
    return float(match.group(1))


def run(
    spec: PgbenchSpec, tag: str = "", admin_url: str = scratch.ADMIN_URL
) -> tuple[float, machine.Watch]:
    """Initialise a scratch database, run TPC-B against it; the tps and who else used the CPU."""
    exe = shutil.which("pgbench")
    if exe is None:
        raise RuntimeError("pgbench is not installed (apt-get install postgresql-client)")
    name = scratch.db_name("pgbench", tag)
    args, env = scratch.libpq_args(admin_url)
    scratch.create(name, admin_url)
    try:
        say(f"pgbench: initialising scale {spec.scale} in {name} …")
        subprocess.run(
            [exe, *args, "-i", "-q", "-s", str(spec.scale), name],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        say(f"pgbench: TPC-B, {spec.clients} clients, {spec.threads} threads, {spec.seconds} s …")
        cmd = [exe, *args, "-c", str(spec.clients), "-j", str(spec.threads)]
        cmd += ["-T", str(spec.seconds), "-P", str(max(1, min(5, spec.seconds // 3))), name]
        stopwatch = machine.Stopwatch()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("progress:"):
                say(f"  {line.rstrip()}")
        if proc.wait() != 0:
            raise RuntimeError("pgbench failed:\n" + "".join(lines))
        foreign = stopwatch.stop()
        tps = parse_tps("".join(lines))
        say(f"pgbench: {tps:,.0f} tps")
        if foreign.disturbed:
            say(f"pgbench: WARNING: {foreign.describe()}")
        return tps, foreign
    finally:
        scratch.drop(name, admin_url)
