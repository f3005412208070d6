"""Which services may ask the token broker for a token, and for which repositories.

lobmob's long-running services (lobboss, lobsigliere, lobwife's own cron jobs) ask
``POST /api/v1/service-token`` for a GitHub token by name. This module is the one place that
decides what such a request may get: everything else (the broker, the HTTP route) asks
:meth:`ServiceTokenPolicy.repos_for`.

lobwife gave any name a token for every repository of the installation. Here only the services
a policy names get one (403 for any other name): by default the fleet's own — lobboss-init,
lobboss, lobsigliere, lobwife — each for every repository; the broker policy file
(:mod:`lobstore.broker.policy`, ``[services]``) names others, or limits their repositories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import ConfigurationError, TokenRefusedError
from ..validation import identifier, repo_name, string_list

# What repos_for answers for "every repository the App installation can reach".
ALL_REPOSITORIES = None
SERVICE_NAME = identifier("service name")
# The services of the fleet that ask for tokens by name (lobmob's manifests and entrypoints).
FLEET_SERVICES: dict[str, Sequence[str] | None] = {
    "lobboss-init": ALL_REPOSITORIES, "lobboss": ALL_REPOSITORIES,
    "lobsigliere": ALL_REPOSITORIES, "lobwife": ALL_REPOSITORIES,
}


class ServiceTokenPolicy:
    """Decides which services get a token and for which repositories.

    ``services`` maps a service name to its ``owner/repo`` names, or to None for every
    repository of the installation. Without it (the default), the fleet's services
    (:data:`FLEET_SERVICES`), each for every repository.
    """

    def __init__(self, services: Mapping[str, Sequence[str] | None] | None = None) -> None:
        self._services: dict[str, list[str] | None] = {}
        for name, repos in (FLEET_SERVICES if services is None else services).items():
            try:
                self._services[SERVICE_NAME(name)] = (
                    ALL_REPOSITORIES if repos is None else string_list(repo_name)(repos) or ALL_REPOSITORIES
                )
            except ValueError as exc:
                raise ConfigurationError(f"service token policy: {name!r}: {exc}") from None

    @property
    def services(self) -> list[str]:
        return sorted(self._services)

    def repos_for(self, service: str) -> list[str] | None:
        """The repositories ``service`` may have a token for (None: every repository the App
        installation reaches). TokenRefusedError (reason ``unknown_service``) for a service the
        policy does not name."""
        if service not in self._services:
            raise TokenRefusedError(
                f"service {service!r} may not ask for a token; the broker policy names "
                f"{', '.join(sorted(self._services)) or 'no services'} (see README, Security)",
                reason="unknown_service", field="service",
            )
        repos = self._services[service]
        return None if repos is None else list(repos)
