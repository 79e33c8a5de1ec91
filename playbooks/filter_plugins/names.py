"""Jinja filters of the project's playbooks (loaded from beside them, also when site.yml imports them)."""

import difflib


def did_you_mean(name: str, known: list[str]) -> str:
    """``name``, followed by the closest known name if one is close, for a typo's error message."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"{name} (did you mean {close[0]}?)" if close else name


class FilterModule:
    def filters(self):
        return {"did_you_mean": did_you_mean}
