"""The token broker's policy: which repositories a task may be registered for, what a lobster's
token may do, and which services may ask for a token of their own.

Read from a TOML file (``lobstore serve --broker-policy PATH`` or ``$LOBSTORE_BROKER_POLICY``):

    # owner/name globs a task may be registered for; outside them registration is refused (403)
    repositories = ["minsley/*", "acme/web"]
    # the GitHub App installation's owner (default: asked from GitHub once)
    owner = "minsley"

    # token permissions per lobster_type (default: contents and pull requests write, metadata read)
    [permissions]
    default = { contents = "read", metadata = "read" }
    swe = { contents = "write", pull_requests = "write", metadata = "read" }

    # services that may ask POST /api/v1/service-token, each for every repository ("*") or some
    [services]
    lobboss = "*"
    lobsigliere = ["minsley/lobmob-vault"]

Every key is optional. Without a file: no allow-list (every repository of the installation's
owner), upstream's permissions, and the fleet's services (lobboss-init, lobboss, lobsigliere,
lobwife). Whatever the file says, a repository of another owner than the installation's is
refused: an installation token cannot reach it, and lobwife used to send only the name after
``owner/``, silently turning ``other-org/payroll`` into the installation owner's ``payroll``.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, RepositoryNotAllowedError
from .service_tokens import ServiceTokenPolicy

# What upstream lobwife asked GitHub for, for every lobster and every service.
DEFAULT_PERMISSIONS: Mapping[str, str] = {"contents": "write", "pull_requests": "write", "metadata": "read"}
ALL = "*"
DEFAULT_TYPE = "default"
_GLOB_RE = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]{1,100}/[A-Za-z0-9_.\-*?\[\]!]{1,100}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_PERMISSION_RE = re.compile(r"^[a-z][a-z_]{0,63}$")
ACCESS_LEVELS = ("read", "write")


@dataclass(frozen=True)
class BrokerPolicy:
    """``repositories``: owner/name globs a registration may name (None: any repository of
    the installation's owner). ``owner``: the installation's owner when configured.
    ``permissions``: per lobster_type (``default`` for the others). ``service_policy``: which
    services may have a token, for which repositories (default: the fleet's, every one)."""

    repositories: tuple[str, ...] | None = None
    owner: str | None = None
    permissions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    service_policy: ServiceTokenPolicy = field(default_factory=ServiceTokenPolicy)
    source: str = "defaults"  # where it was read from, for messages and the log

    def check_repos(self, repos: Iterable[str], *, owner: str | None = None) -> None:
        """Refuse (RepositoryNotAllowedError, 403) repositories outside the allow-list or of
        another owner than the installation's (``owner``, or the configured one)."""
        owner = self.owner or owner
        repos = list(repos)
        if owner is not None:
            foreign = [repo for repo in repos if repo.split("/", 1)[0].lower() != owner.lower()]
            if foreign:
                raise RepositoryNotAllowedError(
                    f"{', '.join(foreign)}: the GitHub App installation belongs to {owner}, so its tokens "
                    f"cannot reach another owner's repositories (nothing is registered)",
                    repos=foreign, owner=owner,
                )
        if self.repositories is not None:
            outside = [repo for repo in repos if not self.allows_repo(repo)]
            if outside:
                raise RepositoryNotAllowedError(
                    f"{', '.join(outside)}: not among the repositories the broker policy ({self.source}) "
                    f"allows: {', '.join(self.repositories) or 'none'}",
                    repos=outside,
                )

    def allows_repo(self, repo: str) -> bool:
        if self.repositories is None:
            return True
        name = repo.lower()
        return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in self.repositories)

    def permissions_for(self, lobster_type: str | None) -> dict[str, str]:
        """What a token for a task of this lobster type may do."""
        chosen = self.permissions.get(lobster_type or DEFAULT_TYPE) or self.permissions.get(DEFAULT_TYPE)
        return dict(chosen or DEFAULT_PERMISSIONS)


def load_policy(path: str | Path) -> BrokerPolicy:
    """The policy in a TOML file; ConfigurationError naming the file and the key at fault."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the broker policy {source!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"the broker policy {source!r} is not valid TOML: {exc}") from None
    return policy_from(data, source)


def policy_from(data: Mapping[str, Any], source: str = "configuration") -> BrokerPolicy:
    def fail(key: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"broker policy ({source}): {key} {message}")

    unknown = sorted(set(data) - {"repositories", "owner", "permissions", "services"})
    if unknown:
        raise fail(unknown[0], "is not a setting (known: repositories, owner, permissions, services)")
    repositories = data.get("repositories")
    if repositories is not None:
        if not _strings(repositories):
            raise fail("repositories", "must be a list of owner/name globs, e.g. [\"minsley/*\"]")
        bad = [pattern for pattern in repositories if not _GLOB_RE.match(pattern)]
        if bad:
            raise fail("repositories", f"holds {bad[0]!r}, which is not an owner/name glob")
        repositories = tuple(repositories)
    owner = data.get("owner")
    if owner is not None and (not isinstance(owner, str) or not re.match(r"^[A-Za-z0-9-]{1,39}$", owner)):
        raise fail("owner", f"must be a GitHub user or organisation name, got {owner!r}")
    permissions = {}
    for lobster_type, levels in (data.get("permissions") or {}).items():
        if not _NAME_RE.match(lobster_type):
            raise fail(f"permissions.{lobster_type}", "is not a lobster type (lower-case letters, digits, - _ .)")
        if not isinstance(levels, Mapping) or not levels:
            raise fail(f"permissions.{lobster_type}", "must be a table such as { contents = \"write\" }")
        for name, level in levels.items():
            if not _PERMISSION_RE.match(name) or level not in ACCESS_LEVELS:
                raise fail(f"permissions.{lobster_type}.{name}", f"must be read or write, got {level!r}")
        permissions[lobster_type] = dict(levels)
    services = ServiceTokenPolicy(_services(data["services"], fail)) if "services" in data else ServiceTokenPolicy()
    return BrokerPolicy(repositories, owner, permissions, services, source)


def _services(value: Any, fail: Any) -> dict[str, tuple[str, ...] | None]:
    if _strings(value):  # a plain list of names: each may have every repository
        value = {name: ALL for name in value}
    if not isinstance(value, Mapping):
        raise fail("services", "must be a list of names or a table of name = \"*\" or [repos]")
    services: dict[str, tuple[str, ...] | None] = {}
    for name, repos in value.items():
        if not _NAME_RE.match(name):
            raise fail(f"services.{name}", "is not a service name (lower-case letters, digits, - _ .)")
        if repos == ALL:
            services[name] = None
        elif _strings(repos) and all(re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", r) for r in repos):
            services[name] = tuple(repos)
        else:
            raise fail(f"services.{name}", f"must be \"*\" or a list of owner/name, got {repos!r}")
    return services


def _strings(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(v, str) for v in value)
