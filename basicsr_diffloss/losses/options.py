"""Validation of DiffLoss options: every error names the option, the value and what is expected."""
import numbers


def choice(option, value, choices):
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"DiffLoss option '{option}': {value!r} is not one of {list(choices)}.")
    return value


def flag(option, value):
    """``value`` as a bool; YAML's true/false only (a string such as 'false' would silently read as True)."""
    if not isinstance(value, bool):
        raise ValueError(f"DiffLoss option '{option}': {value!r} is not true or false.")
    return value


def number(option, value, minimum=None, maximum=None, integer=False):
    """``value`` as a float (or int), or a ValueError that names the option and says what is expected."""
    kind = 'an integer' if integer else 'a number'
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (integer and value != int(value)):
        hint = ' (YAML reads 1e-3 as text: write 1.0e-3 or !!float 1e-3)' if isinstance(value, str) else ''
        raise ValueError(f"DiffLoss option '{option}': {value!r} is not {kind}{hint}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"DiffLoss option '{option}': {value!r} must be >= {minimum}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"DiffLoss option '{option}': {value!r} must be <= {maximum}.")
    return int(value) if integer else float(value)
