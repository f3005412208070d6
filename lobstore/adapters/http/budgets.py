"""Budgets, their alert feed and a task's budget (the ``/budgets`` routes)."""

from __future__ import annotations

from bottle import HTTPResponse

from ...store import Store, Transaction
from .handlers import Handlers
from .wire import flag, json_response, next_page, paging, path_id, read_json, read_query, single, whole_number

BUDGET_LIST = ("include_removed",)
ALERT_LIST = ("budget_id", "after", "limit")
ALERT_PAGE = 100


class BudgetApi(Handlers):
    """Budgets, their alert feed and a task's budget (the ``/budgets`` routes)."""

    def list_budgets(self) -> HTTPResponse:
        params = read_query(BUDGET_LIST)
        removed = "include_removed" in params and flag(single(params, "include_removed"), "include_removed")
        return json_response([b.to_dict() for b in self.store.budgets.list(include_removed=removed)])

    def create_budget(self, db: Store | Transaction) -> HTTPResponse:
        budget = db.budgets.create(**read_json(self.max_body))  # the library names a bad or unknown field
        return json_response(budget.to_dict(), 201)

    def remove_budget(self, db: Store | Transaction, budget_id: str) -> HTTPResponse:
        read_query(())
        return json_response(db.budgets.remove(path_id(budget_id, "budget")).to_dict())

    def list_alerts(self) -> HTTPResponse:
        """The budget alert feed: each 80 % and 100 % crossing, once per budget period, in id order."""
        params = read_query(ALERT_LIST)
        after, limit = paging(params, ALERT_PAGE)
        budget_id = whole_number(single(params, "budget_id"), "budget_id") if "budget_id" in params else None
        alerts = self.store.budgets.alerts(after=after, limit=limit, budget_id=budget_id)
        return json_response([a.to_dict() for a in alerts], headers=next_page(params, alerts, limit))

    def task_budget(self, ref: str) -> HTTPResponse:
        """What a lobster asks before its next call: ``state`` is exhausted when a hard budget is spent."""
        read_query(())
        return json_response(self.store.budgets.for_task(ref).to_dict())
