"""Run every benchmark under ``tests/benchmarks`` and write ``results/BENCHMARKS.md``.

    python tests/benchmarks/report.py [--note "what else ran on the machine"] [-- PYTEST ARGS]

pytest-benchmark writes its JSON (timings, each benchmark's ``extra_info`` ratios and the
machine) to a temporary file; this renders the ratios with the machine they came from
(CPU model, cores, torch threads, torch version, GPU if any, load average before and
after) into ``results/BENCHMARKS.md`` (atomically). Nothing is written when pytest fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "BENCHMARKS.md"
GOALS = {"vanilla_kd": 1.05, "cka": 1.10}  # step / floor, issue 12


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    import torch

    gpu = "none"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return {
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "torch threads": os.environ.get("KA_BENCH_THREADS") or str(min(2, os.cpu_count() or 1)),
        "torch": torch.__version__,
        "GPU": gpu,
        "python": platform.python_version(),
        "OS": platform.platform(),
    }


def run_pytest(json_path: Path, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", "tests/benchmarks", "--benchmark-enable",
           "--benchmark-only", f"--benchmark-json={json_path}", "-q", "-s", *extra]  # fmt: skip
    return subprocess.call(cmd, cwd=ROOT)


def _by_test(data: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        out.setdefault(bench["name"].split("[")[0], []).append(bench)
    return out


def _param(bench: dict) -> str:
    return bench["name"].split("[", 1)[1].rstrip("]") if "[" in bench["name"] else ""


def step_tables(benches: list[dict]) -> list[str]:
    lines = []
    for b in benches:
        info = b["extra_info"]
        lines += [f"### {_param(b)} (batch {info['batch']}, {info['px']} px, {info['device']})", ""]
        lines += ["| method | floor | step ms | floor ms | step/floor (wall) | step/floor (CPU) | goal |",
                  "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name in sorted(k.removesuffix("_floor") for k in info if k.endswith("_floor")):
            kind = info[f"{name}_floor"]
            goal = GOALS.get(name)
            lines.append(
                f"| {name} | {kind} | {info[f'{name}_wall_ms']} | {info[f'floor:{kind}_wall_ms']}"
                f" | {info[f'{name}/floor_wall']:.3f} | {info[f'{name}/floor_cpu']:.3f}"
                f" | {f'<= {goal:.2f}' if goal else ''} |"
            )
        lines.append("")
    return lines


def sync_table(benches: list[dict]) -> list[str]:
    lines = ["| method | host reads per step (CPU proxy) | reads per epoch read | CUDA syncs per step |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for b in benches:
        info = b["extra_info"]
        cuda = info.get("cuda_syncs_per_step", "n/a (no GPU)")
        lines.append(
            f"| {_param(b)} | {info['host_reads_per_step']:g} "
            f"| {info['host_reads_per_epoch_read']:g} | {cuda} |"
        )
    return [*lines, ""]


def compile_table(benches: list[dict]) -> list[str]:
    lines = []
    for b in benches:
        info = b["extra_info"]
        lines += [f"{_param(b)}, batch {info['batch']}, mode `{info['mode']}`:", "",
                  "| method | eager ms | compiled ms | compiled/eager (wall) | (CPU) | compile s |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name in sorted({k.split(":")[0] for k in info if ":compiled/eager_wall" in k}):
            lines.append(
                f"| {name} | {info[f'{name}:eager_wall_ms']} | {info[f'{name}:compiled_wall_ms']}"
                f" | {info[f'{name}:compiled/eager_wall']:.3f}"
                f" | {info[f'{name}:compiled/eager_cpu']:.3f} | {info[f'{name}_compile_s']} |"
            )
        lines += [
            "",
            "Compile s: the first compiled step(s), compile included (cold inductor cache for the "
            "first method; a later method reuses what the same models already compiled).",
            "",
        ]
    return lines


def data_table(benches: list[dict]) -> list[str]:
    lines = ["| loader | images | data s/epoch | step s/epoch | data/step | data share |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for b in benches:
        i = b["extra_info"]
        lines.append(
            f"| {_param(b)} | {i['images']} | {i['data_s_per_epoch']:.3f} "
            f"| {i['step_s_per_epoch']:.3f} | {i['data/step']:.3f} | {100 * i['data_share']:.1f}% |"
        )
    return [*lines, ""]


INTRO = {  # what a section's numbers mean, above its table
    "test_train_step_vs_compute_floor": [
        "`bench.engine.train.train_step` of each method against the floor it is held to: teachers' "
        "forward + the student's forward/backward on the views the method takes (1 or 2) + "
        "Adam; `student`: the student alone. CPU time excludes waiting for a core.",
        "",
    ],
    "test_host_syncs_per_training_step": [
        "One loop step = views + `train_step` + the device-side loss sums. CPU proxy: "
        "Tensor.item/__bool__/__float__/__int__/tolist/numpy/cpu calls outside torch.optim; "
        "the epoch's one read of the sums is the `tolist`.",
        "",
    ],
}

SECTIONS = {  # test function -> (title, renderer)
    "test_train_step_vs_compute_floor": ("Training step vs its compute floor", step_tables),
    "test_host_syncs_per_training_step": ("Host syncs per training step (goal 0)", sync_table),
    "test_compiled_step_vs_eager": ("speed.compile: compiled step vs eager", compile_table),
    "test_data_time_vs_step_time": ("Data loading vs step time", data_table),
}


def render(data: dict, info: dict[str, str], load: tuple[str, str], note: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Regenerated by `python tests/benchmarks/report.py` (pytest-benchmark, "
        "`tests/benchmarks/`); ratios, no timed asserts. Medians of interleaved rounds.",
        "",
        f"Measured {data.get('datetime') or datetime.now(timezone.utc).isoformat()}.",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        f"- load average (1 min) before / after: {load[0]} / {load[1]}",
    ]
    if note:
        lines += ["", f"Conditions: {note}"]
    lines.append("")
    groups = _by_test(data)
    for test, (title, renderer) in SECTIONS.items():
        if test in groups:
            lines += [f"## {title}", "", *INTRO.get(test, []), *renderer(groups[test])]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--note", default="", help="machine conditions to state in the file")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    before = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "bench.json"
        rc = run_pytest(json_path, args.pytest_args)
        if rc != 0 or not json_path.is_file():
            print(f"pytest failed (exit {rc}); {OUT} left as it was", file=sys.stderr)
            return rc or 1
        data = json.loads(json_path.read_text())
    text = render(data, machine(), (before, f"{os.getloadavg()[0]:.1f}"), args.note)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = OUT.with_name(f".{OUT.name}.tmp")
    tmp_out.write_text(text)
    tmp_out.replace(OUT)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
