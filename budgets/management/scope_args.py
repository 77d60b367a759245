"""SCOPE of `set_budget` and `set_limits` (DESIGN, Governance): one definition of the
flags and of what they name.

    --project P | --api-key NAME --project P | --end-user U --project P
    | --default-end-user --project P
"""

from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError, CommandParser

from aura_orchestrator.tenancy.models import ApiKey, Project
from aura_orchestrator.tenancy.selectors import KeyNotFound, api_key_named
from budgets.spend_models import Scope
from budgets.validators import END_USER_RULE, is_valid_end_user


@dataclass(frozen=True, slots=True)
class ScopeArgs:
    project: Project
    scope: str
    api_key: ApiKey | None = None
    end_user: str = ""


def add_scope_arguments(parser: CommandParser, *, default_end_user_help: str) -> None:
    parser.add_argument("--project", required=True, help="Project slug (must exist).")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--api-key", metavar="NAME", help="A key of the project, by name.")
    who.add_argument("--end-user", metavar="U", help="An end user of the project.")
    who.add_argument("--default-end-user", action="store_true", help=default_end_user_help)


def _api_key(project: Project, name: str) -> ApiKey:
    try:
        return api_key_named(project_name=project.name, name=name)
    except KeyNotFound as exc:
        raise CommandError(str(exc)) from exc


def scope_of(options: dict[str, Any]) -> ScopeArgs:
    """What the SCOPE flags name (CommandError for a project, key or end user that is not)."""
    project = Project.objects.filter(name=options["project"]).first()
    if project is None:
        raise CommandError(
            f"No project {options['project']!r} (create_api_key --project creates projects)."
        )
    if options["api_key"] is not None:
        return ScopeArgs(project, Scope.API_KEY, api_key=_api_key(project, options["api_key"]))
    if options["end_user"] is not None:
        if not is_valid_end_user(options["end_user"]):
            raise CommandError(f"--end-user must be {END_USER_RULE}.")
        return ScopeArgs(project, Scope.END_USER, end_user=options["end_user"])
    if options["default_end_user"]:
        return ScopeArgs(project, Scope.DEFAULT_END_USER)
    return ScopeArgs(project, Scope.PROJECT)
