"""Checks of user options, shared by every module: each error names where the option is, its value, and what fits.

``owner`` is what the option belongs to, as the user writes it: ``DiffLoss``, ``DiffusionPrior``,
``val.prior_diagnostics``, ``datasets.train.degradations[0]``, ``guided-diffusion``; messages read
``<owner> option '<name>': <value> <what is wrong>.``
"""
import math
import numbers


class UserError(Exception):
    """A mistake in what the user gave (an option, a file, a command-line argument), with a one-line message that
    names it, its value and the fix. The commands print the message alone, without a traceback (``--debug`` shows
    it)."""


class OptionError(UserError, ValueError):
    """An option that cannot be used; the message names the option, its value and what is expected."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named that does not exist or holds nothing usable; the message names it."""


def option_error(owner, name, value, problem):
    """The OptionError for ``owner``'s option ``name`` holding ``value``."""
    return OptionError(f"{owner} option '{name}': {value!r} {problem}")


def choice(owner, name, value, choices, fix=None):
    """``value`` if it is one of ``choices``; else the error, ending in ``fix`` where one is given."""
    if value not in choices:
        raise option_error(owner, name, value, f'is not one of {list(choices)}' + (f': {fix}' if fix else '.'))
    return value


TRUE_WORDS, FALSE_WORDS = ('true', 'yes', '1'), ('false', 'no', '0')


def flag(owner, name, value, from_text=False):
    """``value`` as a bool; YAML's true/false only (a string such as 'false' would silently read as True), or with
    ``from_text`` also the words of a command line (True/False, yes/no, 1/0)."""
    if from_text and isinstance(value, str) and value.lower() in TRUE_WORDS + FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    if not isinstance(value, bool):
        raise option_error(owner, name, value, 'is not true or false.')
    return value


def number(owner, name, value, minimum=None, maximum=None, integer=False, from_text=False):
    """``value`` as a float (an int with ``integer``), within ``[minimum, maximum]`` where given; with ``from_text``
    a number written as text (a command line's '256') is read too."""
    if from_text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    real = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not real or (integer and not float(value).is_integer()):
        hint = ' (YAML reads 1e-3 as text: write 1.0e-3 or !!float 1e-3)' if isinstance(value, str) else ''
        raise option_error(owner, name, value, f"is not {'an integer' if integer else 'a number'}{hint}.")
    if minimum is not None and value < minimum:
        raise option_error(owner, name, value, f'must be >= {minimum}.')
    if maximum is not None and value > maximum:
        raise option_error(owner, name, value, f'must be <= {maximum}.')
    return int(value) if integer else float(value)


def number_or_range(owner, name, value, minimum=None, maximum=None, integer=False):
    """A number (a fixed value) or ``[low, high]`` with low <= high, as the pair ``(low, high)``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(values) != 2:
        raise option_error(owner, name, value, 'must be a number or [low, high].')
    low, high = (number(owner, name, item, minimum, maximum, integer) for item in values)
    if low > high:
        raise option_error(owner, name, value, 'must be a number or [low, high] with low <= high.')
    return low, high
