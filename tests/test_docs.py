"""README.md and docs/ stay true to the code.

No project history ("session 5"), no links out of the repository, every relative link (and
its #anchor) resolves, and every command shown parses: each `chexficient ...` command in a
fenced block or an inline code span is parsed by its subcommand's own absl flags in a
subprocess (so `--config=FILE:ARG` loads the config and every `--config.a.b=value` key must
exist and its value cast, as at launch), and each `python benchmarks/X.py --flag` names a
flag the script defines. Commands added later are covered with no edit here: the
subcommands come from `chexficient.cli.COMMANDS`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_PAGES = [p for p in PAGES if p.name != "api.md"]
"""Pages whose commands are checked: docs/api.md is generated from docstrings, which name
commands in passing."""

AWAITING_MERGE: set[str] = set()
"""Subcommands the docs show that another branch adds: skipped while `cli.COMMANDS` lacks them."""
AWAITING_FILES: set[str] = set()
"""Pages the docs link that another branch adds: tolerated while they do not exist."""

SHELL_BLOCKS = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HISTORY = re.compile(r"\bsessions?[\s_-]*\d", re.I)


@dataclasses.dataclass(frozen=True)
class Command:
    """One command line as shown in a page (continuations joined), split like a shell would."""

    page: str
    line: int
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {shlex.join(self.argv)}"


def _relative(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _without_code(text: str) -> str:
    """The page with fenced blocks and inline code blanked (line numbers kept)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("``", text)


def _segments(line: str) -> list[list[str]]:
    """Shell words of `line`, split at ; && || |, with a trailing # comment dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, ""
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token.startswith("#"):
            break
        if set(token) <= set(";&|"):
            segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


def _commands_in(line: str, program: str) -> list[list[str]]:
    """Argument lists after each `program` word of a shell line, nested quoted commands
    (`ssh --command="cd x && chexficient ..."`) included."""
    found = []
    for words in _segments(line):
        if program in words:
            found.append(words[words.index(program):])
            continue
        for word in words:  # a quoted shell command passed as an argument
            inner = word.partition("=")[2] if word.startswith("-") else word
            if " " in inner and program in inner.split():
                found += _commands_in(inner, program)
    return found


def shown_commands(program: str) -> list[Command]:
    """Every `program ...` command of README.md and docs/*.md: in shell blocks (and lines of
    plain blocks that start with it) and in inline code spans that are not synopses."""
    out = []
    for page in COMMAND_PAGES:
        text = page.read_text()
        for block in FENCE.finditer(text):
            language, body = block.group(1), block.group(2)
            if language and language not in SHELL_BLOCKS:
                continue
            first = text[:block.start(2)].count("\n") + 1
            lines = body.split("\n")
            k = 0
            while k < len(lines):
                start, line = k, lines[k]
                while line.endswith("\\") and k + 1 < len(lines):
                    k += 1
                    line = line[:-1] + " " + lines[k]
                k += 1
                if not language and not line.lstrip().startswith(program + " "):
                    continue
                out += [Command(_relative(page), first + start, tuple(argv))
                        for argv in _commands_in(line, program)]
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for span in INLINE_CODE.finditer(prose):
            code = span.group(1)
            if code.startswith(program + " ") and not any(c in code for c in ("[", "|", "...")):
                out.append(Command(_relative(page), prose[:span.start()].count("\n") + 1,
                                   tuple(shlex.split(code))))
    return out


# --------------------------------------------------------------------------- pages


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_no_project_history(page):
    hits = [f"{_relative(page)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
            for text in [page.read_text()] for m in HISTORY.finditer(text)]
    assert not hits, "docs state figures with their command and machine, not the session:\n" + \
        "\n".join(hits)


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_no_reference_to_the_shared_folder(page):
    text = page.read_text()
    for forbidden in ("../shared", "ARCHITECTURE.md"):
        assert forbidden not in text, f"{_relative(page)} mentions {forbidden!r}: a clone has " \
            "no such file; the design is docs/architecture.md"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, seen = set(), {}
    for line in _without_code(page.read_text()).split("\n"):
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_relative_links_resolve(page):
    problems = []
    text = _without_code(page.read_text())
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        where = f"{_relative(page)}:{text.count(chr(10), 0, m.start()) + 1}: ({target})"
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if ROOT not in (resolved, *resolved.parents):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            if str(resolved.relative_to(ROOT)) not in AWAITING_FILES:
                problems.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{where}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_awaited_files_are_still_awaited():
    arrived = sorted(f for f in AWAITING_FILES if (ROOT / f).exists())
    assert not arrived, f"{arrived} exist now: remove them from AWAITING_FILES in tests/test_docs.py"


# --------------------------------------------------------------------------- commands


def test_the_pages_show_commands():
    """The extraction finds what the pages show (a guard against a silently empty check)."""
    subcommands = {c.argv[1] for c in shown_commands("chexficient") if len(c.argv) > 1}
    assert {"quickstart", "train", "export", "bench", "data"} <= subcommands


def test_shown_chexficient_commands_parse():
    from chexficient.cli import COMMANDS

    arrived = sorted(AWAITING_MERGE & set(COMMANDS))
    assert not arrived, f"{arrived} are commands now: remove them from AWAITING_MERGE"
    commands = [c for c in shown_commands("chexficient") if len(c.argv) > 1]
    problems = [f"{c}\n    unknown subcommand {c.argv[1]!r}; valid: {', '.join(COMMANDS)}"
                for c in commands if c.argv[1] not in COMMANDS and c.argv[1] not in AWAITING_MERGE]
    by_module: dict[str, list[Command]] = {}
    for c in commands:
        if c.argv[1] in COMMANDS:
            by_module.setdefault(COMMANDS[c.argv[1]][0], []).append(c)
    request = {module: [list(c.argv[2:]) for c in cs] for module, cs in by_module.items()}
    result = subprocess.run([sys.executable, __file__], input=json.dumps(request), text=True,
                            capture_output=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    for module, cs in by_module.items():
        problems += [f"{c}\n    {error}" for c, error in zip(cs, errors[module]) if error]
    assert not problems, "commands shown in the docs that do not parse:\n" + "\n".join(problems)


def test_shown_benchmark_commands_name_real_flags():
    problems = []
    for c in shown_commands("python"):
        if len(c.argv) > 2 and c.argv[1] == "-m":
            if importlib.util.find_spec(c.argv[2].split(".")[0]) is None:
                problems.append(f"{c}: no module {c.argv[2]!r}")
            continue
        script = ROOT / c.argv[1] if len(c.argv) > 1 else None
        if script is None or script.suffix != ".py":
            continue
        if not script.exists():
            problems.append(f"{c}: no script {c.argv[1]}")
            continue
        defined = set(re.findall(r"add_argument\(\s*[\"'](--[\w-]+)", script.read_text()))
        for word in c.argv[2:]:
            flag = word.partition("=")[0]
            if flag.startswith("--") and flag not in defined:
                problems.append(f"{c}: {c.argv[1]} has no flag {flag}; it has {sorted(defined)}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the parser process
# Each subcommand module defines its flags on absl's global FLAGS, and several define the same
# names (--out, --config), so the modules are imported one at a time in a child process, each
# one's flags removed before the next is imported.


def _dataset_name_error(name: str) -> str:
    from chexficient.data import registry

    valid = set(registry.dataset_names()) | set(registry.builder_names())
    return "" if name in valid else f"unknown dataset {name!r}; valid: {', '.join(sorted(valid))}"


def _experiment_error(value: str) -> str:
    from chexficient.quickstart import experiment_names, load_config

    name, _, arg = value.partition(":")
    if name not in experiment_names():
        return f"unknown experiment {name!r}; valid: {', '.join(experiment_names())}"
    spec = load_config(f"experiments/{name}", arg or None)
    return _dataset_name_error(spec.dataset)


def _positional_error(module, rest: list[str]) -> str:
    """What a subcommand's main would say about its positional arguments (`data ACTION NAME`)."""
    actions = getattr(module, "ACTIONS", None)
    if actions is None:
        return f"unexpected arguments: {' '.join(rest)}" if rest else ""
    if len(rest) != 2 or rest[0] not in actions:
        return f"expected ACTION NAME with ACTION in {sorted(actions)}, got {rest}"
    return "" if rest[1].isupper() else _dataset_name_error(rest[1])


def _parse_error(module, argv: list[str]) -> str:
    """'' if absl parses `argv` as `main` would receive it, else the error."""
    import ml_collections
    from absl import flags

    sys.argv = [f"chexficient {module.__name__}", *argv]  # config_flags reads overrides here
    own = flags.FLAGS.get_key_flags_for_module(module.__name__)
    flags.FLAGS.unparse_flags()
    for name in [n for n in flags.FLAGS if "." in n and n.split(".")[0] in {f.name for f in own}]:
        delattr(flags.FLAGS, name)  # the previous command's --config.* override flags
    try:
        rest = flags.FLAGS(sys.argv)[1:]
        error = _positional_error(module, rest)
        for flag in own:
            if isinstance(flag.value, (type(None), str, int, float, bool, list, tuple)):
                continue
            data = flag.value.get("data")  # a config; one that failed to load raises here
            if isinstance(data, ml_collections.ConfigDict) and data.get("name"):
                error = error or _dataset_name_error(data.name)
        if "experiment" in flags.FLAGS and flags.FLAGS["experiment"].present:
            error = error or _experiment_error(flags.FLAGS.experiment)
        return error
    except Exception as e:  # noqa: BLE001  (any failure to parse is the finding)
        return f"{type(e).__name__}: {e}".strip()[:2000]


def _parse_all(request: dict[str, list[list[str]]]) -> dict[str, list[str]]:
    import importlib

    from absl import flags

    errors = {}
    for module_name, argvs in request.items():
        module = importlib.import_module(module_name)
        errors[module_name] = [_parse_error(module, argv) for argv in argvs]
        flags.FLAGS.unparse_flags()
        own = [f.name for f in flags.FLAGS.get_key_flags_for_module(module_name)]
        for name in [n for n in flags.FLAGS if n in own or any(n.startswith(o + ".") for o in own)]:
            definer = flags.FLAGS.find_module_defining_flag(name)
            parent, _, child = definer.rpartition(".")
            sys.modules.pop(definer, None)  # a module shared by commands defines them again
            if parent in sys.modules and hasattr(sys.modules[parent], child):
                delattr(sys.modules[parent], child)
            delattr(flags.FLAGS, name)  # so the next module may define the same names
        sys.modules.pop(module_name, None)
    return errors


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(_parse_all(json.loads(sys.stdin.read()))))
