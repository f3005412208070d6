"""Which services may ask the token broker for a token, and for which repositories.

lobmob's long-running services (lobboss, lobsigliere, lobwife's own cron jobs) ask
``POST /api/v1/service-token`` for a GitHub token by name. This module is the one place that
decides what such a request may get: everything else (the broker, the HTTP route) asks
:meth:`ServiceTokenPolicy.repos_for`.

The default policy is lobwife's behaviour: any well-formed service name gets a token for every
repository the GitHub App installation can reach. A policy built with ``services`` names the
services allowed and the repositories each may have; any other name is refused (403).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import ConfigurationError, TokenRefusedError
from ..validation import identifier, repo_name, string_list

# What repos_for answers for "every repository the App installation can reach".
ALL_REPOSITORIES = None
SERVICE_NAME = identifier("service name")


class ServiceTokenPolicy:
    """Decides which services get a token and for which repositories.

    ``services`` maps a service name to its ``owner/repo`` names, or to None for every
    repository of the installation. Without it (the default), every service name is allowed
    every repository, as lobwife allowed.
    """

    def __init__(self, services: Mapping[str, Sequence[str] | None] | None = None) -> None:
        self._services: dict[str, list[str] | None] | None = None
        if services is not None:
            self._services = {}
            for name, repos in services.items():
                try:
                    self._services[SERVICE_NAME(name)] = (
                        ALL_REPOSITORIES if repos is None else string_list(repo_name)(repos) or ALL_REPOSITORIES
                    )
                except ValueError as exc:
                    raise ConfigurationError(f"service token policy: {name!r}: {exc}") from None

    @property
    def open(self) -> bool:
        """True when any service may ask (lobwife's behaviour)."""
        return self._services is None

    def repos_for(self, service: str) -> list[str] | None:
        """The repositories ``service`` may have a token for (None: every repository the App
        installation reaches). TokenRefusedError (reason ``unknown_service``) for a service the
        policy does not name."""
        if self._services is None:
            return ALL_REPOSITORIES
        if service not in self._services:
            raise TokenRefusedError(
                f"service {service!r} may not ask for a token; known services: "
                f"{', '.join(sorted(self._services)) or 'none'}",
                reason="unknown_service", field="service",
            )
        repos = self._services[service]
        return None if repos is None else list(repos)
