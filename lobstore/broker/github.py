"""The GitHub App token provider: installation access tokens for a task's repositories.

The app authenticates with an RS256 JSON Web Token signed with its private key, then asks
GitHub for an installation token limited to the task's repositories and to the permissions a
lobster needs. Needs the ``cryptography`` package (``pip install 'lobstore[broker]'``); PyJWT
is not used: the JWT is three base64url parts and one signature.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..clock import parse_timestamp
from ..errors import ConfigurationError, RepositoryNotAllowedError, TokenProviderError
from ..models import IssuedToken
from ..work import holding, waiting

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.github.com"
PERMISSIONS = {"contents": "write", "pull_requests": "write", "metadata": "read"}
# GitHub refuses a JWT issued in the future or living over 10 minutes; backdating `iat` by a
# minute absorbs clock drift, and 9 minutes of life keeps `exp` under the limit even so.
JWT_BACKDATE = 60
JWT_LIFETIME = 9 * 60
DEFAULT_TIMEOUT = 10.0
MAX_REASON = 200


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_private_key(*, pem: str | bytes | None = None, path: str | Path | None = None) -> Any:
    """The app's RSA private key from PEM text, base64-encoded PEM text (what ``GH_APP_PEM``
    holds) or a PEM file. Raises ConfigurationError saying what is wrong."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError(
            "the GitHub App token provider needs the cryptography package: "
            "pip install 'lobstore[broker]'"
        ) from None
    if (pem is None) == (path is None):
        raise ConfigurationError("give the GitHub App private key as PEM text or as a file path (one of them)")
    if path is not None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the GitHub App private key {str(path)!r}: {exc.strerror}") from None
        source = f"file {str(path)!r}"
    else:
        data = pem.encode() if isinstance(pem, str) else pem
        source = "GH_APP_PEM"
        if b"-----BEGIN" not in data:
            try:
                data = base64.b64decode(data, validate=False)
            except ValueError:
                raise ConfigurationError(f"{source} is neither PEM nor base64-encoded PEM") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"the GitHub App private key ({source}) is not a usable PEM key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"the GitHub App private key ({source}) must be an RSA key (GitHub signs with RS256)")
    return key


def make_jwt(app_id: str, private_key: Any, now: float | None = None) -> str:
    """An RS256 JWT that authenticates the app (not an installation) for a few minutes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    issued = int(now if now is not None else time.time()) - JWT_BACKDATE
    header = {"alg": "RS256", "typ": "JWT"}
    payload = {"iat": issued, "exp": issued + JWT_BACKDATE + JWT_LIFETIME, "iss": str(app_id)}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    ).encode("ascii")
    signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


class GitHubAppTokenProvider:
    """Installation tokens from a GitHub App, limited to the task's repositories.

    An installation belongs to one owner (a user or an organisation) and its tokens reach that
    owner's repositories only. A repository of another owner is refused here, before GitHub is
    asked: GitHub takes repository names without the owner, so sending ``payroll`` for
    ``other-org/payroll`` would hand out the installation owner's ``payroll`` instead.
    """

    def __init__(
        self,
        app_id: str | int,
        installation_id: str | int,
        private_key: Any,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = DEFAULT_TIMEOUT,
        owner: str | None = None,
    ) -> None:
        self.app_id = str(app_id)
        self.installation_id = str(installation_id)
        self._key = private_key
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self._owner = owner  # configured, or learnt from GitHub on first need
        self._owner_lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"<GitHubAppTokenProvider app {self.app_id} installation {self.installation_id} at {self.api_base}>"

    @property
    def url(self) -> str:
        return f"{self.api_base}/app/installations/{self.installation_id}/access_tokens"

    @property
    def known_owner(self) -> str | None:
        """The installation's owner if known already (configured or learnt), without asking."""
        return self._owner

    def installation_owner(self) -> str:
        """The account the installation belongs to: configured, else asked from GitHub once."""
        with holding(self._owner_lock):  # its holder may be asking GitHub
            if self._owner is None:
                status, data = self._call("GET", f"{self.api_base}/app/installations/{self.installation_id}", None)
                try:
                    login = data["account"]["login"]
                    if not isinstance(login, str) or not login:
                        raise ValueError("no login")
                except (KeyError, TypeError, ValueError):
                    raise TokenProviderError(
                        f"GitHub answered {status} without the installation's account",
                        upstream_status=status, reason="unexpected response",
                    ) from None
                self._owner = login
                log.info("the GitHub App installation %s belongs to %s", self.installation_id, login)
            return self._owner

    def issue(self, repos: Sequence[str] | None, *, permissions: Mapping[str, str] | None = None) -> IssuedToken:
        """A token for ``repos`` (all of the installation's owner; RepositoryNotAllowedError
        otherwise), or with None for every repository the installation reaches, with
        ``permissions`` (default: contents and pull requests write, metadata read)."""
        body: dict[str, Any] = {"permissions": dict(permissions or PERMISSIONS)}
        if repos is not None:
            owner = self.installation_owner()
            foreign = [repo for repo in repos if repo.split("/", 1)[0].lower() != owner.lower()]
            if foreign or not repos:
                raise RepositoryNotAllowedError(
                    f"{', '.join(foreign) or 'no repositories'}: the GitHub App installation belongs to "
                    f"{owner}; its tokens reach {owner}'s repositories only", repos=foreign, owner=owner,
                )
            body["repositories"] = [repo.split("/", 1)[1] for repo in repos]
        status, data = self._call("POST", self.url, body)
        try:
            token, expires_at = data["token"], parse_timestamp(data["expires_at"])
            if not isinstance(token, str) or not token:
                raise ValueError("empty token")
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenProviderError(
                f"GitHub answered {status} without a usable token ({_short(str(exc))})",
                upstream_status=status, reason="unexpected response",
            ) from None
        what = ", ".join(repos) if repos is not None else "every repository of the installation"
        log.info("GitHub issued an installation token for %s (expires %s)", what, data["expires_at"])
        return IssuedToken(token=token, expires_at=expires_at)

    def _call(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        """One request to GitHub as the app; TokenProviderError (503) when it fails."""
        request = urllib.request.Request(
            url,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {make_jwt(self.app_id, self._key)}",
                "Content-Type": "application/json",
                "User-Agent": "lobstore-token-broker",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )
        try:
            with waiting(), urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            reason = _github_message(exc.read()) or exc.reason or "no reason given"
            log.warning("GitHub refused %s %s: %s %s", method, url, exc.code, reason)
            raise TokenProviderError(
                f"GitHub refused the request ({exc.code}): {reason}",
                upstream_status=exc.code, reason=reason,
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = _short(str(getattr(exc, "reason", None) or exc) or type(exc).__name__)
            # Where GitHub was looked for goes to the log; clients are told only that it failed.
            log.warning("GitHub could not be reached at %s: %s", self.api_base, reason)
            raise TokenProviderError(
                f"GitHub could not be reached: {reason}", upstream_status=None, reason=reason,
            ) from None
        try:
            return status, json.loads(raw)
        except ValueError:
            raise TokenProviderError(
                f"GitHub answered {status} with something that is not JSON",
                upstream_status=status, reason="unexpected response",
            ) from None


def _github_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return _short(raw.decode("utf-8", "replace"))
    return _short(str(data.get("message", ""))) if isinstance(data, dict) else ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
