"""Cost events, their sums and the prices (the ``/costs`` routes)."""

from __future__ import annotations

import logging

from bottle import HTTPResponse

from ...errors import ValidationError
from ...store import Store, Transaction
from .handlers import Handlers
from .wire import flag, json_response, next_page, paging, read_json, read_query, renamed, single

log = logging.getLogger(__name__)

LIBRARY_PAGE = 100  # the library's default page of cost events and audit findings
COST_LIST = ("task_id", "model", "agent", "since", "until", "after", "limit")
COST_SUMMARY = ("since", "until", "period", "group_by", "task_id", "model", "agent")
PRICE_QUERY = ("model", "at", "history")


class CostApi(Handlers):
    """Cost events, their sums and the prices (the ``/costs`` routes)."""

    def record_costs(self, db: Store | Transaction) -> HTTPResponse:
        """One event (an object) or a batch (an array of up to 1,000, all or none). A repeated
        ``request_id`` answers with the event stored the first time: 200 instead of 201."""
        body = read_json(self.max_body, batch=True)
        if isinstance(body, list):
            events = db.costs.record_many(body)
            fresh = any(not event.duplicate for event in events)
            return json_response([event.to_dict() for event in events], 201 if fresh else 200)
        event = db.costs.record(**body)  # the library names an unknown field
        return json_response(event.to_dict(), 200 if event.duplicate else 201)

    def list_costs(self) -> HTTPResponse:
        params = read_query(COST_LIST)
        filters = renamed({name: single(params, name) for name in params if name not in ("after", "limit")})
        after, limit = paging(params, LIBRARY_PAGE)
        events = self.store.costs.list(after=after, limit=limit, **filters)
        return json_response([e.to_dict() for e in events], headers=next_page(params, events, limit))

    def summary(self) -> HTTPResponse:
        params = read_query(COST_SUMMARY)
        filters = renamed({name: single(params, name) for name in params})
        return json_response(self.store.costs.summary(**filters).to_dict())

    def task_costs(self, ref: str) -> HTTPResponse:
        read_query(())
        return json_response(self.store.costs.for_task(ref).to_dict())

    def list_prices(self) -> HTTPResponse:
        """The prices in effect now (or ``at`` a time); ``history=true``: every price ever set."""
        params = read_query(PRICE_QUERY)
        model = single(params, "model") if "model" in params else None
        if "history" in params and flag(single(params, "history"), "history"):
            if "at" in params:
                raise ValidationError("give at or history=true, not both", field="at")
            prices = self.store.costs.prices(model)
        else:
            at = single(params, "at") if "at" in params else None
            prices = [p for p in self.store.costs.current_prices(at) if model is None or p.model == model]
        return json_response([price.to_dict() for price in prices])

    def set_price(self, db: Store | Transaction) -> HTTPResponse:
        price = db.costs.set_price(**read_json(self.max_body))  # the library names a bad or unknown field
        return json_response(price.to_dict(), 201)

    def reprice(self, db: Store | Transaction) -> HTTPResponse:
        """Re-price a model's table-priced events with the prices now; ``dry_run`` writes nothing."""
        result = db.costs.reprice(**read_json(self.max_body))  # the library names a bad or unknown field
        return json_response(result.to_dict())
