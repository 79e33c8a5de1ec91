"""Forms; Flask-WTF adds and checks the CSRF token on every one of them."""

from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError

from .passwords import MAX_LENGTH, policy_errors

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
# Login input is only bounded so one request cannot make us hash megabytes.
LOGIN_INPUT_MAX = 1024


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class _NewPassword:
    """Policy check that also sees the username, to refuse password == username."""

    def __init__(self, username_field: str | None = None) -> None:
        self.username_field = username_field

    def __call__(self, form: FlaskForm, field: PasswordField) -> None:
        username = None
        if self.username_field:
            username = form[self.username_field].data
        elif getattr(form, "username_hint", None):
            username = form.username_hint
        errors = policy_errors(field.data or "", username)
        if errors:
            raise ValidationError(errors[0])


class LoginForm(FlaskForm):
    username = StringField(
        "Username",
        filters=[_strip],
        validators=[DataRequired(), Length(max=LOGIN_INPUT_MAX)],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=LOGIN_INPUT_MAX)],
        render_kw={"autocomplete": "current-password"},
    )


class RegisterForm(FlaskForm):
    username = StringField(
        "Username",
        filters=[_strip],
        validators=[
            DataRequired(),
            Regexp(
                USERNAME_RE,
                message="Use 3 to 64 letters, digits, dots, dashes or underscores, "
                "starting with a letter or digit.",
            ),
        ],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"},
        description="3 to 64 characters: letters, digits, . _ -",
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), _NewPassword("username")],
        render_kw={"autocomplete": "new-password"},
        description=f"At least 8 characters (up to {MAX_LENGTH}). Long passphrases are welcome.",
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
        render_kw={"autocomplete": "new-password"},
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password",
        validators=[DataRequired(), Length(max=LOGIN_INPUT_MAX)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        "New password",
        validators=[DataRequired(), _NewPassword()],
        render_kw={"autocomplete": "new-password"},
        description=f"At least 8 characters (up to {MAX_LENGTH}).",
    )
    confirm = PasswordField(
        "Repeat new password",
        validators=[
            DataRequired(),
            EqualTo("new_password", message="The passwords do not match."),
        ],
        render_kw={"autocomplete": "new-password"},
    )

    def __init__(self, *args: object, username_hint: str | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.username_hint = username_hint


class LogoutForm(FlaskForm):
    """Only a CSRF token: logging out must be a deliberate POST from our own page."""
