"""The `irstream` command line: one module per concern, each a Typer app whose commands are
merged here at the top level (`irstream run`, `irstream eval`, ...), plus the `bench` and
`synth` groups.  Commands only parse options and call the package; a UserError becomes one
line on stderr and exit code 2."""

from __future__ import annotations

import typer

from irstream.cli import evaluate, model, run, tools
from irstream.cli.common import err

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find and track small targets in infrared video.")
for part in (run, evaluate, model):
    app.registered_commands += part.app.registered_commands
app.add_typer(tools.synth_app, name="synth")
app.add_typer(tools.bench_app, name="bench")


def main() -> None:
    import logging

    from rich.logging import RichHandler

    # Warnings (a camera reconnecting, a stalled stage) go to stderr beside the progress bar.
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, markup=False)])
    app()


if __name__ == "__main__":
    main()
