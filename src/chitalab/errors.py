"""Errors caused by the user's input: reported as one line, without a traceback."""


class UserError(Exception):
    """A bad value or missing file that the user can fix; the message says how."""


def choice_error(what: str, value: object, allowed: list[str] | tuple[str, ...]) -> UserError:
    """The standard message for a value outside a fixed set of choices."""
    return UserError(f"{what}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def check_int(name: str, value: object, low: int) -> int:
    """`value` if it is an integer >= `low`, else a UserError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name}={value!r} is not allowed; it must be an integer >= {low}")
    return value
