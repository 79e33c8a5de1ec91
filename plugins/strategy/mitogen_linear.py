"""Mitogen's linear strategy, from the mitogen package pinned in requirements.txt.

Ansible looks strategies up by path; this file puts the installed package's on
the project's path, whichever Python the venv has. Mitogen keeps one Python
interpreter per host for the whole run and caches the modules' code in it,
instead of starting Python and compiling the module for every task.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
