"""Error types shared by every rexbench package."""


class BadInput(ValueError):
    """Raised for bad user input (unknown names, empty text, malformed files).

    The CLI turns it into exit status 2 with a one-line reason on stderr.
    """


def unknown_name(kind: str, name: str, valid) -> BadInput:
    """A `BadInput` whose message lists the valid names."""
    return BadInput(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


class RunFault(RuntimeError):
    """An internal fault of a run that is not the user's input (lost Dask scheduler or workers, disk
    full, a database that cannot be written): the CLI prints it as one line with the next step and
    exits 1. Finished shards are kept; the message says how to continue (`--resume`)."""


def about_ranker(name: str, e: BaseException | str) -> str:
    """`e`'s message about the ranker named `name` in a suite, without a second "ranker '...':" prefix
    (rankers name themselves by type, e.g. 'callable'; the suite's name is the one users know)."""
    import re
    msg = " ".join(str(e).split()) if not isinstance(e, BaseException) or str(e) else type(e).__name__
    if isinstance(e, BaseException) and not isinstance(e, (BadInput, RunFault)):
        msg = f"{type(e).__name__}: {msg}"
    return f"ranker {name!r}: {re.sub(r'^ranker [^:]*: ', '', msg)}"
