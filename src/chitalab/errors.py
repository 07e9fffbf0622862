"""Errors caused by the user's input: reported as one line, without a traceback."""


class UserError(Exception):
    """A bad value or missing file that the user can fix; the message says how."""


def choice_error(what: str, value: object, allowed: list[str] | tuple[str, ...]) -> UserError:
    """The standard message for a value outside a fixed set of choices."""
    return UserError(f"{what}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
