"""Errors caused by the user's input: reported as one line, without a traceback."""

from __future__ import annotations

import importlib.util
import math


class UserError(Exception):
    """A bad value or missing file that the user can fix; the message says how. `details` (a
    library's full message, say) go to the run's log file only, not to the terminal."""

    def __init__(self, message: str, details: str | None = None):
        super().__init__(message)
        self.details = details


class ArgumentError(UserError):
    """A bad constructor argument, named as the class knows it (`iterations=-1 ...`). The CLI
    prefixes the config key Hydra was instantiating (`pruner.solver.iterations=-1 ...`), so a
    class never hard-codes where it sits in the config."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument

    def with_prefix(self, prefix: str) -> ArgumentError:
        """The same error, its argument named as `prefix.argument`."""
        message = str(self)
        if message.startswith(self.argument):
            message = f"{prefix}.{message}"
        return ArgumentError(f"{prefix}.{self.argument}", message)


def choice_error(what: str, value: object, allowed: list[str] | tuple[str, ...]) -> ArgumentError:
    """The standard message for a value outside a fixed set of choices."""
    return ArgumentError(what, f"{what}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def check_choice(name: str, value: object, allowed: list[str] | tuple[str, ...]) -> str:
    """`value` if it is one of `allowed`, else the standard choice error."""
    if not isinstance(value, str) or value not in allowed:
        raise choice_error(name, value, allowed)
    return value


def check_int(name: str, value: object, low: int) -> int:
    """`value` if it is an integer >= `low`, else an ArgumentError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArgumentError(name, f"{name}={value!r} is not allowed; it must be an integer >= {low}")
    return value


def check_number(name: str, value: object, low: float, inclusive: bool = True, rule: str | None = None) -> float:
    """`value` as a float if it is a finite number >= `low` (> `low` when not `inclusive`),
    else an ArgumentError naming `name` (`rule` replaces the default wording of the range)."""
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and (number >= low if inclusive else number > low)):
        bound = rule or f"a finite number {'>=' if inclusive else '>'} {low:g}"
        raise ArgumentError(name, f"{name}={value!r} is not allowed; it must be {bound}")
    return number


def check_fraction(name: str, value: object) -> float:
    """`value` as a float if it is a number in [0, 1) (a sparsity), else an ArgumentError."""
    number = check_number(name, value, 0, rule="a number in [0, 1)")
    if not number < 1:
        raise ArgumentError(name, f"{name}={value!r} is not allowed; it must be a number in [0, 1)")
    return number


def require_extra(module: str, extra: str, purpose: str, instead: str | None = None) -> None:
    """Raise a UserError naming the extra to install (and what to do `instead`) when the optional
    `module` is missing (checked without importing it)."""
    if importlib.util.find_spec(module) is None:
        alternative = f", or {instead}" if instead else ""
        raise UserError(
            f"{purpose} needs {module}, which is not installed: pip install 'chitalab[{extra}]'{alternative}"
        )
