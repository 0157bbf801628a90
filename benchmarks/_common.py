"""Helpers shared by the benchmark scripts: data preparation, device description, JSON output.

Not a test and not part of the package: the scripts import it from their own folder.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent  # the repository root
if str(ROOT) not in sys.path:  # run from anywhere, even without the editable install
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from seq2seq.config.load import load_config  # noqa: E402
from seq2seq.config.schema import Config  # noqa: E402

DEFAULT_RECIPE = ROOT / "recipes" / "multi30k-de-en.yaml"
DEFAULT_MIRROR = ROOT / ".." / "shared" / "corpora" / "multi30k"
DEFAULT_WORKDIR = ROOT / "data" / "bench"


def data_arguments(parser, workdir: Path = DEFAULT_WORKDIR) -> None:
    """--recipe, --mirror and --workdir, the same in every benchmark script."""
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe YAML (default: %(default)s)")
    parser.add_argument(
        "--mirror",
        default=str(DEFAULT_MIRROR),
        help="folder holding the recipe's corpus files (default: ../shared/corpora/multi30k "
        "relative to the repository root)",
    )
    parser.add_argument(
        "--workdir",
        default=str(workdir),
        help="the corpus goes to <workdir>/corpus, the run (SentencePiece model, checkpoints) to "
        "<workdir>/run or <workdir>/<row>/run (default: %(default)s)",
    )


def info(msg: str) -> None:
    """Progress and diagnostics: stderr only, so stdout stays one JSON object per line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ("model name", "cpu family", "flags", ...);
    empty where there is none."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU's model name and, on x86, its family/model numbers: a VM may call every generation
    "AMD EPYC", and Zen 1 (family 23 model 1) has half the FMA width of Zen 2 and later (2 x 128
    against 2 x 256 bits per cycle: the microarchitecture's, not measured here)."""
    fields = cpuinfo()
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def describe_device(device: torch.device) -> dict:
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(idx)
    else:
        name = f"{cpu_name()} ({os.cpu_count()} logical CPUs visible, "
        name += f"capability {torch.backends.cpu.get_cpu_capability()})"
    return {"device": str(device), "device_name": name}


def environment(device: torch.device) -> dict:
    """Fields every JSON line carries (besides its own settings and figures)."""
    env = describe_device(device)
    env.update(torch=torch.__version__, python=platform.python_version(), num_threads=torch.get_num_threads())
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    env["loadavg_1m"] = loadavg()  # other jobs on the machine skew CPU figures
    return env


def loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class CpuShare:
    """How busy the machine's CPUs were with *other* processes over an interval (Linux /proc/stat).

    other_busy = (all CPUs' busy time - this process's CPU time) / (wall time x CPUs), 0..1: the
    share of the machine someone else used while we measured. None where /proc/stat is missing.
    ``children``: also count the CPU time of this process's waited-for children as its own (a
    benchmark that runs the measured program as a subprocess).
    """

    def __init__(self, children: bool = False):
        self.children = children
        self.start = self._snap()

    def _snap(self):
        import resource

        try:
            f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (f[0] + f[1] + f[2] + sum(f[5:8])) / os.sysconf(
            "SC_CLK_TCK"
        )  # user nice system irq softirq steal
        whose = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) if self.children else (resource.RUSAGE_SELF,)
        own = sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime for w in whose)
        return time.perf_counter(), busy, own

    def other_busy(self) -> Optional[float]:
        end = self._snap()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        other = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return round(min(1.0, max(0.0, other / (wall * (os.cpu_count() or 1)))), 3) if wall > 0 else None


def busy_warning(share: Optional[float], what: str) -> None:
    """Say on stderr when other processes took a noticeable share of the CPUs during a measurement."""
    if share is not None and share > 0.1:
        info(
            f"warning: other processes used {share:.0%} of the CPUs during {what}: the figure is noisy "
            f"(rerun when the machine is idle; a shared CPU hurts multi-threaded torch most)"
        )


def bench_config(recipe: Path, workdir: Path, overrides: list[str] = ()) -> Config:
    return load_config(recipe, [f"data.dir={workdir / 'corpus'}", f"run_dir={workdir / 'run'}", *overrides])


def prepare(cfg: Config, mirror: Optional[Path]) -> None:
    """Download (from the mirror) and train the SentencePiece model(s), each only when missing."""
    from seq2seq.data.corpus import MANIFEST, download
    from seq2seq.data.tokenizer import spm_paths, train_tokenizers

    if not (cfg.data_dir / MANIFEST).is_file():
        info(f"preparing corpus in {cfg.data_dir} from mirror {mirror}")
        download(cfg, mirror=mirror, log=info)
    src, tgt = spm_paths(cfg.run_path)
    if not (src.is_file() and tgt.is_file()):
        info(f"training SentencePiece in {cfg.run_path / 'spm'} (once)")
        train_tokenizers(cfg, log=info)


def peak_rss_mib() -> float:
    """Process-lifetime high-water mark of the resident set (ru_maxrss is KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def current_rss_mib() -> Optional[float]:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def resolve(path: str) -> Path:
    """A user path: absolute, or relative to the current directory."""
    return Path(path).expanduser().resolve()


# ------------------------------------------------------------------------ other toolkits' venvs

TORCH_PIN = torch.__version__.split("+")[0]  # the project's torch, e.g. 2.13.0 (local tag dropped)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_check(venv: Path, code: str) -> Optional[str]:
    """What ``python -c code`` prints in the venv (stripped), or None when it fails or there is no venv."""
    import subprocess

    py = venv_python(venv)
    if not py.is_file():
        return None
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def pip_failure(log_text: str) -> str:
    """pip's reason for failing, from its output: its ERROR lines and a resolver conflict's 'depends on'
    lines, else its last three lines."""
    lines = [x.strip() for x in log_text.strip().splitlines()]
    why = [x for x in lines if x.startswith("ERROR:") or " depends on " in x or "requested" in x]
    return " | ".join(dict.fromkeys(why or lines[-3:]))


def install_venv(
    venv: Path, installs: list[list[str]], constraints: list[str], check: str
) -> tuple[Optional[str], str]:
    """Another toolkit's own venv (never the project's): created with ``python -m venv`` when missing,
    then ``pip install`` of each requirement list in turn under a constraints file (``constraints``: e.g.
    ``torch==<the project's>``; torch comes from the wheel on this machine's disk, an unpinned one would
    pull a CUDA build). Returns (what ``check`` prints in the venv, "") or (None, why); pip's output goes
    to ``<venv>-install.log`` beside it."""
    import shlex
    import subprocess

    log = venv.parent / f"{venv.name}-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    info(f"installing into {venv} (pip's output goes to {log})")
    constraint_file = venv.parent / f"{venv.name}-constraints.txt"
    constraint_file.write_text("".join(x + "\n" for x in constraints))
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--retries", "2", "-c", str(constraint_file)]
    steps = [("create the venv", [sys.executable, "-m", "venv", str(venv)])]
    steps += [(f"install {' '.join(reqs)}", [*pip, *reqs]) for reqs in installs]
    with log.open("a", encoding="utf-8") as out:
        for what, cmd in steps:
            if what == "create the venv" and venv_python(venv).is_file():
                continue
            info(f"  {what}")
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            start = out.tell()
            res = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if res.returncode:
                out.flush()
                with log.open(encoding="utf-8", errors="replace") as fh:
                    fh.seek(start)
                    said = fh.read()
                return None, f"could not {what} (exit {res.returncode}; see {log}): {pip_failure(said)}"
    found = venv_check(venv, check)
    if found is None:
        return None, f"{check!r} fails in {venv} after installation (see {log})"
    return found, ""
