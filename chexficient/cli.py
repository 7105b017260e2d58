"""The `chexficient` command: the front door to data, training, export, benchmarks and inference.

Each subcommand lives in the module that owns it and defines its own absl flags; this
file only dispatches, importing the target lazily so that unrelated flags never clash.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from chexficient import allocator, compilation_cache

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
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):  # so --help lists them
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    app.run(quiet_by_default(module.main), argv=[f"chexficient {command}"] + argv[2:])


if __name__ == "__main__":
    main()
