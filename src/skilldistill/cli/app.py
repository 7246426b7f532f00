"""The typer application and shared console. Each verb lives in its own module here."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from .. import __version__
from ..errors import ConfigError, SkilldistillError
from ..keyvalue import parse_key_values
from ..progress import NOISY_LOGGERS

app = typer.Typer(
    name="skilldistill",
    help="Skill-aware data selection and fine-tuning for data-efficient reasoning distillation.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"skilldistill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    # Third-party chatter (HTTP requests, tokenizer warnings) stays out of the way.
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show our own errors (bad input, bad config, a failed model server) as one red line
    and exit 2; a traceback is for bugs only."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            message = error_line(e)
            if message is None:
                raise
            console.print(f"[bold red]error:[/bold red] {_escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def error_line(e: BaseException) -> str | None:
    """The one line a user sees for an expected failure, or None for a bug."""
    from pydantic import ValidationError

    if isinstance(e, SkilldistillError):
        return str(e)
    if isinstance(e, ValidationError):  # an option value a config refused: name the field
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(value)"
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})"[:300])
        return "invalid option: " + "; ".join(parts)
    try:
        import openai
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    kept = "work finished before is kept: rerun to resume"
    if isinstance(e, openai.APIStatusError):
        body = str(getattr(e, "body", None) or e.message)[:300]
        return f"the model server answered HTTP {e.status_code} (after every retry): {body}; {kept}"
    if isinstance(e, openai.APITimeoutError):
        return f"the model server did not answer within the request timeout (after every retry); {kept}"
    if isinstance(e, openai.APIConnectionError):
        return f"cannot reach the model server (after every retry): {e}; {kept}"
    return None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def engine_kwargs(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` options (values parsed as YAML) for the engine: vllm.LLM / EngineArgs
    keywords with --backend vllm, from_pretrained keywords with --backend transformers."""
    try:
        return parse_key_values(pairs, option="--engine-arg")
    except ConfigError as e:  # a usage error of the option, shown by typer as before
        raise typer.BadParameter(str(e)) from None


def on_duplicate_option() -> Any:
    """``--on-duplicate``, shared by every command that reads a tree file."""
    return typer.Option(
        "merge", "--on-duplicate",
        help="Sibling skills with the same name (EvalTree has 15): merge (one node, their children joined; "
             "a warning per merge), rename (' (2)', ' (3)', ...), or error.",
    )


def resolve_tree(spec: str, on_duplicate: str) -> Any:
    """A tree from a file or bundled name, ``on_duplicate`` checked (a bad value is a ConfigError)."""
    from ..tree import SkillTree

    if on_duplicate not in ("merge", "rename", "error"):
        raise ConfigError(f"--on-duplicate must be merge, rename or error, not {on_duplicate!r}")
    return SkillTree.resolve(spec, on_duplicate=on_duplicate)  # type: ignore[arg-type]
