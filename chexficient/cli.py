"""The `chexficient` command: the front door to data, training, export, benchmarks and inference.

Each subcommand lives in the module that owns it and defines its own absl flags; this
file only dispatches, importing the target lazily so that unrelated flags never clash.
"""

from __future__ import annotations

import importlib
import linecache
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType

from chexficient import allocator, compilation_cache

TRACEBACK_ENV = "CHEXFICIENT_TRACEBACK"
"""Set to 1 to see the full traceback of an error the command reports in one paragraph."""

_ROOT = Path(__file__).resolve().parent.parent
_OWN = tuple(str(_ROOT / package) + os.sep
             for package in ("chexficient", "pretrain", "curation", "downstream", "configs"))

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("chexficient.data.commands", "Build, show and describe datasets."),
    "train": ("pretrain.train_command", "Pretrain (optionally with an online curator) from a config."),
    "export": ("curation.export_command", "Export the curated subset a run selected."),
    "bench": ("downstream.bench_command", "Run the downstream benchmark suite on checkpoints."),
    "embed": ("chexficient.embed_command", "Embed your own images (or texts) with a trained model."),
    "zeroshot": ("chexficient.zeroshot_command", "Zero-shot probabilities of findings for your images."),
    "retrieve": ("chexficient.retrieve_command", "The texts closest to each of your images."),
    "export-model": ("chexficient.export_model_command",
                     "Write a model as model.safetensors + config.json + tokenizer."),
    "quickstart": ("chexficient.quickstart_command", "Reproduce the headline claim on the synthetic world."),
}


def _usage() -> str:
    lines = ["usage: chexficient COMMAND [flags]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`chexficient COMMAND --help` lists a command's flags."]
    return "\n".join(lines)


def quiet_by_default(command_main: Callable[[list[str]], int | None]
                     ) -> Callable[[list[str]], int | None]:
    """`command_main` at WARNING verbosity unless --verbosity (-v) was given: a command shows its
    own lines, progress bars and warnings, and the libraries' INFO lines only on request."""
    def run(argv: list[str]) -> int | None:
        from absl import flags, logging

        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return command_main(argv)  # its exit status, as absl's app.run expects
    return run


def user_error(error: Exception) -> str | None:
    """The message of an error the user can act on, or None for one that needs its traceback.

    The user's errors are the ones this project raises on purpose (a `raise` statement in its
    own code, whatever the type) and a config file that failed to load; anything else (a bug,
    a library's failure) keeps its traceback.
    """
    tb = _innermost(error)
    if tb is None:
        return None
    filename = tb.tb_frame.f_code.co_filename
    if f"ml_collections{os.sep}config_flags" in filename and isinstance(error, OSError):
        return f"the config file did not load: {str(error).strip().splitlines()[-1].strip()}"
    if not filename.startswith(_OWN) or not linecache.getline(
            filename, tb.tb_lineno).lstrip().startswith("raise"):
        return None
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in message:
        message += f"\n  caused by {type(cause).__name__}: {cause}"
    return message


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with its errors in one paragraph: a config file's error as its last
    line rather than its traceback, and a `--config.X` override naming no field of the config
    as that flag and ml_collections' guess."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        message = str(error)
        if "Traceback (most recent call last):" in message:
            head = message.split("Traceback (most recent call last):")[0].strip()
            message = f"{head} {message.strip().splitlines()[-1].strip()}"
    except (AttributeError, KeyError) as error:
        tb = _innermost(error)
        if tb is None or "ml_collections" not in tb.tb_frame.f_code.co_filename:
            raise
        message = _unknown_config_field(error, argv)
    print(f"{argv[0]}: error: {message}\n`{argv[0]} --help` lists its flags.", file=sys.stderr)
    sys.exit(2)


def _innermost(error: BaseException) -> TracebackType | None:
    """The frame an exception was raised in (None if it was never raised)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _unknown_config_field(error: Exception, argv: list[str]) -> str:
    """'--config.a.b: the config has no field b' from ml_collections' KeyError."""
    inner = error.args[0] if error.args else error
    text = str(inner.args[0]) if isinstance(inner, KeyError) and inner.args else str(inner)
    key, _, hint = text.partition("\n")
    key = key.strip("'\"")
    overrides = [arg.split("=", 1)[0] for arg in argv if arg.startswith("--config.")]
    named = [flag for flag in overrides if key in flag[len("--config."):].split(".")]
    where = named[0] if named else "a --config override"
    return f"{where}: the config has no field {key!r}" + (f" ({hint.strip()})" if hint else "")


def _show_usage_of(module: ModuleType) -> None:
    """Makes `chexficient COMMAND --help` open with the command's usage (its module docstring):
    absl prints the `__main__` module's docstring, which is the console script's or this file's."""
    sys.modules["__main__"].__doc__ = "\n" + (module.__doc__ or "").replace("%", "%%")


def main(argv: list[str] | None = None) -> None:
    """Dispatches `chexficient COMMAND ...` to `<module>.main` through absl.

    Run as a command (no `argv`), it first restarts itself with huge pages for malloc
    (chexficient/allocator.py); called with `argv` it runs in the calling process as it is.
    Compiled steps are kept in JAX's persistent cache (chexficient/compilation_cache.py).
    """
    from absl import app

    if argv is None:
        allocator.reexec_with_huge_pages()
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(f"unknown command {command!r}; valid: {', '.join(COMMANDS)}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        sys.exit(2)
    from absl import flags

    compilation_cache.enable()
    module = importlib.import_module(COMMANDS[command][0])
    _show_usage_of(module)
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):  # so --help lists them
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    try:
        app.run(quiet_by_default(module.main), argv=[f"chexficient {command}"] + argv[2:],
                flags_parser=parse_flags)
    except Exception as error:  # noqa: BLE001  (reported in one paragraph, or re-raised)
        message = user_error(error)
        if message is None or os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(f"chexficient {command}: error: {message}\n({TRACEBACK_ENV}=1 shows where it "
              "was raised)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
