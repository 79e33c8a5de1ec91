"""The forms of an HTML page, as a browser sees them: action and default field values."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str | None
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append(Form(values.get("action"), (values.get("method") or "get").lower()))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1].fields[values["name"]] = values.get("value") or ""


def forms(page: str) -> list[Form]:
    """Every <form> of ``page`` in document order."""
    parser = _FormParser()
    parser.feed(page)
    parser.close()
    return parser.forms


def form(page: str, action: str | None = None) -> Form:
    """The form posting to ``action``; without one, the page's last form (the header's logout form comes first)."""
    found = forms(page)
    if action is not None:
        found = [f for f in found if f.action == action]
    if not found:
        raise AssertionError(f"no form{' posting to ' + action if action else ''} on the page")
    return found[-1]


def csrf_token(page: str, action: str | None = None) -> str:
    """The CSRF token of a form on ``page`` (see ``form``)."""
    token = form(page, action).fields.get("csrf_token")
    if not token:
        raise AssertionError("the form has no csrf_token field")
    return token
