"""``lobstore credentials``: make, list and revoke the API credentials of the HTTP API."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any

from ..clock import parse_timestamp, to_iso, utcnow
from ..credentials import SCOPE_HELP, SCOPES
from ..errors import ValidationError
from ..models import Credential
from .support import format_table, store_from_args

DESCRIPTION = f"""\
Credentials for the lobwife HTTP API when it runs with --auth required. A client sends the
secret as "Authorization: Bearer <secret>" (lobstore.client reads $LOBSTORE_TOKEN).

  lobstore credentials create lobboss --scope write --scope broker
  lobstore credentials create dashboard --scope read --expires 90d
  lobstore credentials list
  lobstore credentials revoke lobboss

Scopes:
{chr(10).join(f"  {scope:<7} {text}" for scope, text in SCOPE_HELP.items())}

The secret is printed once, on standard output alone (so $(...) captures it); the store keeps
only its hash. Lost secrets cannot be shown again: revoke and create a new one.
"""

_DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def register(commands: Any) -> None:
    group = commands.add_parser("credentials", help="API credentials: create, list, revoke",
                                description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = group.add_subparsers(dest="credentials_command", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="make a credential and print its secret once",
                                description="Make a credential and print its secret (once) on standard output.")
    create.add_argument("name", help="who holds it, e.g. lobboss, dashboard, cron-audits")
    create.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                        help=f"{', '.join(SCOPES)}; repeat or comma-separate for several")
    create.add_argument("--expires", metavar="WHEN",
                        help="a duration from now (90d, 12h, 2w, 30m) or an ISO time; default: never")
    create.add_argument("--json", action="store_true", help="print the credential and its secret as JSON")
    create.set_defaults(run=cmd_create)

    listing = actions.add_parser("list", help="list credentials (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked ones")
    listing.add_argument("--tasks", action="store_true", help="include task credentials (task:T42)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(run=cmd_list)

    revoke = actions.add_parser("revoke", help="revoke a credential at once",
                                description="Revoke a credential: the next request with it is refused. "
                                            "task:T42 revokes every credential of task T42.")
    revoke.add_argument("name")
    revoke.set_defaults(run=cmd_revoke)


def parse_expiry(value: str | None, now: datetime | None = None) -> datetime | None:
    """``--expires``: a duration from now (90d, 12h, 2w, 30m) or an ISO timestamp."""
    if value is None:
        return None
    match = _DURATION_RE.match(value.strip())
    if match:
        return (now or utcnow()) + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        return parse_timestamp(value)
    except ValueError:
        raise ValidationError(
            f"--expires takes a duration (90d, 12h, 2w, 30m) or an ISO time such as 2027-01-01, got {value!r}",
            field="expires_at",
        ) from None


def cmd_create(args: argparse.Namespace) -> int:
    scopes = [scope.strip() for value in args.scope for scope in value.split(",") if scope.strip()]
    with store_from_args(args) as store:
        issued = store.credentials.create(args.name, scopes=scopes, expires_at=parse_expiry(args.expires),
                                          created_by="cli")
    credential = issued.credential
    if args.json:
        print(json.dumps(issued.to_dict(), indent=2))
    else:
        print(issued.secret)
    expiry = f"expires {to_iso(credential.expires_at)}" if credential.expires_at else "never expires"
    print(f"credential {credential.name!r} ({', '.join(credential.scopes)}; {expiry}). The secret is "
          "shown this once: store it now, e.g. as LOBSTORE_TOKEN in a Kubernetes Secret.", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        found = store.credentials.list(include_revoked=args.all, include_tasks=args.tasks)
    if args.json:
        print(json.dumps([c.to_dict() for c in found], indent=2))
        return 0
    if not found:
        print("no credentials: make one with `lobstore credentials create NAME --scope SCOPE`")
        return 0
    print(format_table(["NAME", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "STATE"],
                       [_row(c) for c in found]))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        revoked = store.credentials.revoke(args.name)
    for credential in revoked:
        print(f"revoked {credential.name!r} (made {to_iso(credential.created_at)})")
    return 0


def _row(credential: Credential) -> list[Any]:
    scopes = ", ".join(credential.scopes) if credential.task_ref is None else f"task {credential.task_ref}"
    if credential.revoked_at is not None:
        state = f"revoked {to_iso(credential.revoked_at)}"
    elif credential.expires_at is not None and credential.expires_at <= utcnow():
        state = "expired"
    else:
        state = "live"
    return [credential.name, scopes, to_iso(credential.created_at), to_iso(credential.last_used_at) or "never",
            to_iso(credential.expires_at) or ("with the registration" if credential.task_ref else "never"), state]
