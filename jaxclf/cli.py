"""How the command lines end on bad input: one line on stderr naming the problem, exit code 1.

The traceback is printed only when asked for: ``--verbosity=1`` (or higher) or the
environment variable ``JAXCLF_DEBUG=1``. Errors that are not about the input (bugs, a failing
disk) keep their traceback.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from typing import Callable, Sequence

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

# What bad input raises: from config files and overrides, validation, the workdir, the data.
INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, FloatingPointError)


def debugging(argv: Sequence[str] | None = None) -> bool:
    """Whether tracebacks were asked for; reads ``argv`` itself (flags may not parse)."""
    if os.environ.get("JAXCLF_DEBUG", "") not in ("", "0"):
        return True
    args = list(sys.argv if argv is None else argv)
    for i, a in enumerate(args):
        value = None
        if a.startswith(("--verbosity=", "-v=")):
            value = a.split("=", 1)[1]
        elif a in ("--verbosity", "-v") and i + 1 < len(args):
            value = args[i + 1]
        if value is not None:
            try:
                return int(value) >= 1
            except ValueError:
                return value.lower() in ("debug", "info")
    return False


def message(error: BaseException) -> str:
    """The error's text on one line. A KeyError's text is its argument, not its repr (and
    ml_collections' AttributeError holds a KeyError's repr: unquoted too)."""
    text = error.args[0] if isinstance(error, (KeyError, AttributeError)) and error.args else str(error)
    if isinstance(text, BaseException):
        return message(text)
    while isinstance(text, str) and len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            break
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def config_flag_message(error: BaseException, argv: Sequence[str]) -> str:
    """A config file or ``--config.KEY=V`` override that failed to load, naming the flag."""
    text = message(error)
    if isinstance(error, OSError) and "Failed loading config file" in str(error):
        return unreadable_config(error)
    if isinstance(error, AttributeError) and "get_config" in text:
        path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "the config file")
        return f"--config: {path.split(':')[0]} defines no get_config(arg=None) returning a ConfigDict"
    raw = error
    while isinstance(raw, (KeyError, AttributeError)) and raw.args:  # ml_collections: AttributeError(KeyError(...))
        raw = raw.args[0]
    unknown = re.match(r"^'([^']+)'", raw) if isinstance(raw, str) else None
    if unknown:  # "'lrr'\nDid you mean "lr" instead of "lrr"?", or "'threshold'" when no key is close
        key = unknown.group(1)
        flag = next((a.split("=", 1)[0] for a in argv if a.startswith("--config.")
                     and key in a.split("=", 1)[0].split(".")), None)
        hint = " ".join(raw[unknown.end():].split())
        where = f"{flag}: " if flag else ""
        return f"{where}unknown config key {key!r}" + (f"; {hint[0].lower()}{hint[1:]}" if hint else "")
    return text


def config_value(holder):
    """The ConfigDict of a ``DEFINE_config_file`` flag, or a one-line error: a config file
    that cannot be read fails only when the config is first used."""
    config = holder.value
    try:
        config.keys()
    except OSError as e:  # ml_collections' _ErrorConfig
        if debugging():
            raise
        fail(unreadable_config(e))
    return config


def unreadable_config(error: OSError) -> str:
    """ml_collections' multi-line 'Failed loading config file' error, by its last line."""
    attempts = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"--config: cannot load the config file: {attempts[-1]}"


def fail(text: str, code: int = EXIT_ERROR) -> None:
    print(f"error: {text}", file=sys.stderr, flush=True)
    sys.exit(code)


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing (``app.run(..., flags_parser=parse_flags)``): a config file that
    does not load or an override of an unknown key is one line, not a traceback."""
    from absl import app, flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        text = str(e)
        if "Traceback (most recent call last)" in text:  # config_flags' error in the config file
            flag = text.split(": Error whilst parsing", 1)[0].removeprefix("flag ")
            last = text.strip().splitlines()[-1]
            text = f"{flag}: {last.split(': ', 1)[-1]}"
        print(f"error: {message(Exception(text))} (--helpshort lists the flags)", file=sys.stderr)
        sys.exit(app.UsageError("").exitcode)
    except Exception as e:  # noqa: BLE001  (a config file is the user's code: whatever it raises is input)
        if debugging(argv):
            raise
        fail(config_flag_message(e, argv))


def guarded(main: Callable, errors: tuple = INPUT_ERRORS) -> Callable:
    """``main`` with ``errors`` (and Ctrl-C) reported on one line unless debugging."""

    def run(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            if debugging():
                raise
            fail("interrupted", EXIT_INTERRUPTED)
        except errors as e:
            if debugging():
                raise
            fail(message(e))

    return run
