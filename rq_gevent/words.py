"""Counts in messages: "1 worker process", "2 worker processes"."""


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1 (``-es`` after s, x, ch, sh)."""
    if count == 1:
        return f"{count} {noun}"
    if plural_noun is None:
        plural_noun = noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{count} {plural_noun}"
