"""Every `python run.py ...` command shown in the docs composes (the in-process equivalent of `--cfg job`).

Collected from README.md, docs/*.md, slurm/ (README.md, *.sbatch, *.sh) and the comments of conf/**/*.yaml:
fenced code and comment lines (joined over `\\` continuations), inline `python run.py ...` code spans of the
prose, and the run.py override lines of experiment files (`cat > x.txt <<'EOF'` blocks, `#   stage=...`
comment examples). A failure names file:line, the command as written and Hydra's message, so a renamed key
or option cannot leave a dead example behind.

How a documented command is read: `-m` sweeps compose once per swept value (the others at their first value);
`<placeholder>` values become a plain string, a config group chosen by a placeholder (`stage=<stage>`) is left
at its default; `...`, `[optional]` brackets, flags (`--cfg job`, `--help`) and shell variables are dropped;
`pipeline=` commands also compose every step the pipeline would run (wsss.pipeline.plan).
"""
from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.helpers import ROOT

CONF = ROOT / "conf"
COMMAND = re.compile(r"(?:^|(?<=[\s`(;&|]))python3? run\.py(?=\s|$|`)")
INLINE = re.compile(r"`(python3? run\.py\b[^`]*)`")
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp",
                    "--config-dir", "-cd", "--info", "-i"}
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
KEPT = re.compile("\u27e8[^\u27e8\u27e9\\s]+\u27e9")  # a placeholder as words() keeps it


@dataclass(frozen=True)
class DocCommand:
    where: str        # file:line
    text: str         # as written
    args: tuple[str, ...]

    def __str__(self):
        return f"{self.where}: {self.text}"


# -- collecting -------------------------------------------------------------------------------------------
def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "slurm").glob("*.md")),
             *sorted((ROOT / "slurm").glob("*.sbatch")), *sorted((ROOT / "slurm").glob("*.sh")),
             *sorted(CONF.rglob("*.yaml"))]
    return [f for f in files if f.is_file()]


def logical_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(1-based number of the first line, text) with `\\` continuations joined."""
    out, i = [], 0
    while i < len(lines):
        start, text = i + 1, lines[i].rstrip()
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            nxt = lines[i].strip()
            text = text[:-1].rstrip() + " " + (nxt[1:].strip() if nxt.startswith("#") else nxt)
        out.append((start, text))
        i += 1
    return out


def commands_in_line(text: str) -> list[str]:
    tails = []
    for m in COMMAND.finditer(text):
        tail = text[m.end():]
        tails.append(tail.split("`", 1)[0] if m.start() and text[m.start() - 1] == "`" else tail)
    return tails


def experiment_line(content: str) -> str | None:
    """A line of an experiments file (run.py overrides only), possibly after `<sbatch options> -- `."""
    body = content.split(" -- ", 1)[1] if " -- " in content else content
    tokens = body.split()
    if tokens and re.match(r"(stage|experiment|pipeline)=", tokens[0]) and all("=" in t for t in tokens):
        return body
    return None


def collect_file(path: Path, root: Path = ROOT) -> list[DocCommand]:
    rel = path.relative_to(root)
    lines = path.read_text().splitlines()
    found: list[DocCommand] = []
    markdown = path.suffix == ".md"
    in_fence, heredoc = False, None
    if markdown:  # prose: inline code spans, which may wrap over a line break
        paragraph: list[tuple[int, str]] = []
        for n, line in enumerate([*lines, ""], 1):
            if line.strip().startswith("```"):
                in_fence = not in_fence
                paragraph = []
                continue
            if in_fence:
                continue
            if line.strip():
                paragraph.append((n, line))
                continue
            joined = " ".join(t for _, t in paragraph)
            starts = [n0 for n0, t in paragraph for _ in range(len(t) + 1)]
            for m in INLINE.finditer(joined):
                found.append(DocCommand(f"{rel}:{starts[min(m.start(), len(starts) - 1)]}", m.group(1),
                                        tuple(words(m.group(1)[m.group(1).index("run.py") + 6:]))))
            paragraph = []
    in_fence = not markdown
    for n, text in logical_lines(lines):
        stripped = text.strip()
        if markdown and stripped.startswith("```"):
            in_fence = not in_fence
            continue
        if not in_fence:
            continue
        content = stripped.lstrip("#").strip() if (not markdown or stripped.startswith("#")) else stripped
        comment = stripped.startswith("#")
        if path.suffix in (".yaml", ".sh", ".sbatch") and not comment:
            continue  # code of scripts and configs: only their comments document commands
        if heredoc:
            if stripped == heredoc:
                heredoc = None
            elif stripped and not stripped.startswith("#") and experiment_line(stripped):
                found.append(DocCommand(f"{rel}:{n}", stripped, tuple(words(experiment_line(stripped)))))
            continue
        m = re.search(r"<<-?\s*'?\"?(\w+)'?\"?\s*$", content)
        if m:
            heredoc = m.group(1)
            continue
        for tail in commands_in_line(content):
            found.append(DocCommand(f"{rel}:{n}", "python run.py" + tail, tuple(words(tail))))
        if comment and path.suffix in (".sh", ".sbatch") and experiment_line(content):
            found.append(DocCommand(f"{rel}:{n}", content, tuple(words(experiment_line(content)))))
    return found


def words(tail: str) -> list[str]:
    """The run.py arguments at the start of `tail`, up to a shell operator, comment or prose."""
    tail = PLACEHOLDER.sub(lambda m: f"\u27e8{m.group(0)[1:-1]}\u27e9", tail)  # <x> is no redirection
    lexer = shlex.shlex(tail, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out = []
    try:
        for token in lexer:
            if token and set(token) <= set("();<>|&"):
                break
            out.append(token)
    except ValueError:  # an unbalanced quote in prose: keep what was read
        pass
    return out


def collect() -> list[DocCommand]:
    return [c for f in doc_files() for c in collect_file(f)]


# -- reading a documented command as overrides --------------------------------------------------------------
def is_group(key: str) -> bool:
    key = key.lstrip("+~")
    return "/" in key or (CONF / key).is_dir()


def overrides_of(args: tuple[str, ...]) -> tuple[list[str], bool]:
    """(Hydra overrides, multirun) of a documented run.py argument list."""
    out, multirun, skip = [], False, False
    for token in args:
        if skip:
            skip = False
            continue
        if token in ("-m", "--multirun"):
            multirun = True
            continue
        if token in FLAGS_WITH_VALUE:
            skip = True
            continue
        if token.startswith("-"):
            continue
        if token.startswith("[") and "=" in token:
            token = token[1:]
        if token.endswith("]") and "[" not in token:
            token = token[:-1]
        if "=" not in token or token.startswith("$"):  # `...`, `<line>`, $VAR: not an override
            continue
        key, _, value = token.partition("=")
        if KEPT.search(value):
            if is_group(key) and KEPT.fullmatch(value):
                continue
            value = KEPT.sub(lambda m: m.group(0)[1:-1], value)
        out.append(f"{key}={value}")
    return out, multirun


def variants(overrides: list[str]) -> list[list[str]]:
    """One override list per swept value (the other sweeps at their first value); [overrides] without sweeps."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = {i: list(ov.sweep_string_iterator()) for i, ov in enumerate(parsed) if ov.is_sweep_override()}
    if not sweeps:
        return [overrides]

    def text(i: int, value: str) -> str:
        ov = parsed[i]
        prefix = "++" if ov.is_force_add() else "+" if ov.is_add() else ""
        return f"{prefix}{ov.get_key_element()}={value}"

    first = {i: text(i, vals[0]) for i, vals in sweeps.items()}
    base = [first.get(i, o) for i, o in enumerate(overrides)]
    out = [base]
    for i, vals in sweeps.items():
        for v in vals[1:]:
            out.append([text(i, v) if j == i else o for j, o in enumerate(base)])
    return out


@functools.lru_cache(maxsize=None)
def composed(overrides: tuple[str, ...]) -> str | None:
    """None when `overrides` compose, else the error (cached: the docs repeat commands)."""
    try:
        compose_command(list(overrides))
    except Exception as e:  # Hydra's and the pipeline planner's messages
        return f"{type(e).__name__}: " + str(e).strip().replace("\n", "\n    ")
    return None


def compose_command(overrides: list[str]) -> None:
    """Compose (and resolve) what `python run.py <overrides>` would run; a pipeline's steps too."""
    from wsss.fetch_weights import command_configs

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        saved = HydraConfig.instance().cfg
        try:
            HydraConfig.instance().set_config(cfg)  # run.dir interpolates ${hydra:...} and the job's keys
            run_dir = str(cfg.hydra.run.dir)
            OmegaConf.set_readonly(cfg.hydra, False)
            cfg.hydra.runtime.output_dir = run_dir
            HydraConfig.instance().set_config(cfg)
            job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
            job.pop("hydra")
            command_configs(job)  # resolves the job config, or plans the pipeline's steps
        finally:
            HydraConfig.instance().cfg = saved


COMMANDS = collect()


def test_the_docs_show_commands_to_check():
    where = {c.where.split(":")[0] for c in COMMANDS}
    assert len(COMMANDS) >= 40, len(COMMANDS)
    assert {"README.md", "slurm/README.md", "slurm/array.sbatch", "conf/hydra/launcher/slurm.yaml"} <= where


def test_reading_a_documented_command(tmp_path):
    cmd = ("python run.py -m hydra/launcher=slurm stage=<stage> dataset.args.root=<VOC2012> "
           "[experiment=synthetic] [seed=1 ...] stage.lr=0.1,0.05 --cfg job | tail  # comment")
    overrides, multirun = overrides_of(tuple(words(cmd[len("python run.py"):])))
    assert multirun and overrides == ["hydra/launcher=slurm", "dataset.args.root=VOC2012", "experiment=synthetic",
                                      "seed=1", "stage.lr=0.1,0.05"]
    assert variants(overrides)[1][-1] == "stage.lr=0.05" and variants(overrides)[0][-1] == "stage.lr=0.1"
    (tmp_path / "x.md").write_text("a `python run.py\nstage=pnoc` b\n\n```bash\npython run.py a=1 \\\n"
                                   "  b=2   # c\n```\n")
    found = collect_file(tmp_path / "x.md", tmp_path)
    assert [(c.where, c.args) for c in found] == [("x.md:1", ("stage=pnoc",)), ("x.md:5", ("a=1", "b=2"))]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_composes(cmd: DocCommand):
    overrides, _ = overrides_of(cmd.args)
    for ov in variants(overrides):
        error = composed(tuple(ov))
        if error:
            pytest.fail(f"{cmd.where}: this documented command does not compose:\n  {cmd.text}\n"
                        f"  composed as: python run.py {' '.join(ov)} --cfg job\n  {error}", pytrace=False)


def documented_extras() -> list[tuple[str, str]]:
    """(file:line, value) of every `WSSS_EXTRA="..."` example of slurm/ (overrides appended to each line)."""
    found = []
    for path in sorted((ROOT / "slurm").glob("*")):
        if path.is_file():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                found += [(f"slurm/{path.name}:{n}", m) for m in re.findall(r'WSSS_EXTRA="([^"]+)"', line)]
                found += [(f"slurm/{path.name}:{n}", m) for m in re.findall(r'e\.g\. "([^"]+=[^"]+)"', line)
                          if "WSSS_EXTRA" in line]
    return found


def test_documented_extra_overrides_compose():
    extras = documented_extras()
    assert extras, "slurm/ documents WSSS_EXTRA"
    for where, value in extras:
        error = composed(("stage=classifier", *shlex.split(value)))
        assert error is None, f"{where}: WSSS_EXTRA={value!r} does not compose: {error}"
