"""Error types shared by every rexbench package."""


class BadInput(ValueError):
    """Raised for bad user input (unknown names, empty text, malformed files).

    The CLI turns it into exit status 2 with a one-line reason on stderr.
    """


def unknown_name(kind: str, name: str, valid) -> BadInput:
    """A `BadInput` whose message lists the valid names."""
    return BadInput(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")
