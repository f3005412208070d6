"""The price table: prices per model per million tokens, with the date each takes effect."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...clock import utcnow
from ...errors import ConflictError
from ...models import ModelPrice
from ...pricing import CACHE_READ_RATIO, CACHE_WRITE_RATIO, price_to_micro, scaled
from ...schema import model_prices
from ...validation import clean_fields, field, text, timestamp, with_positional
from ..base import Repository
from .common import bound

log = logging.getLogger(__name__)

_PER_MTOK = {"type": "number", "minimum": 0}
PRICE_CLEANERS = {
    "model": text(200, required=True).require(),
    "input_usd_per_mtok": field(price_to_micro, _PER_MTOK, "USD per million tokens ($3 is 3, not 0.000003)").require(),
    "output_usd_per_mtok": field(price_to_micro, _PER_MTOK, "USD per million tokens").require(),
    "cache_read_usd_per_mtok": field(lambda value: None if value is None else price_to_micro(value),
                                     {**_PER_MTOK, "nullable": True}, "default 0.1 x the input price"),
    "cache_write_usd_per_mtok": field(lambda value: None if value is None else price_to_micro(value),
                                      {**_PER_MTOK, "nullable": True}, "default 1.25 x the input price"),
    "effective_from": timestamp.doc("when it takes effect (default now)"),
    "actor": text(200).doc("who set it"),
}


PRICES_OF = (
    sa.select(model_prices)
    .where(model_prices.c.model.in_(sa.bindparam("models", expanding=True)))
    .order_by(model_prices.c.model, model_prices.c.effective_from)
)
_INSERT_PRICE = sa.insert(model_prices)

class PriceBook:
    """The price history of some models, to cost many events without a query each."""

    def __init__(self, prices: Iterable[ModelPrice]) -> None:
        self._by_model: dict[str, list[ModelPrice]] = {}
        for price in prices:  # ordered by model, effective_from
            self._by_model.setdefault(price.model, []).append(price)
        self._starts = {m: [p.effective_from for p in ps] for m, ps in self._by_model.items()}

    def at(self, model: str, when: datetime) -> ModelPrice | None:
        """The price in effect at ``when``: the latest that took effect at or before it."""
        starts = self._starts.get(model)
        if not starts:
            return None
        position = bisect.bisect_right(starts, when)
        return self._by_model[model][position - 1] if position else None


def price_from_row(row: sa.Row) -> ModelPrice:
    return ModelPrice(**row._mapping)


class CostPrices(Repository):
    # -- prices ---------------------------------------------------------------------------------
    def prices(self, model: str | None = None) -> list[ModelPrice]:
        """Every price (or one model's), by model and then by the date it took effect."""
        query = sa.select(model_prices).order_by(model_prices.c.model, model_prices.c.effective_from)
        if model is not None:
            query = query.where(model_prices.c.model == model)
        with self._scope.reading() as conn:
            return [price_from_row(row) for row in conn.execute(query)]

    def current_prices(self, at: datetime | str | None = None) -> list[ModelPrice]:
        """For each model, the price in effect at ``at`` (default now)."""
        when = bound("at", at) or utcnow()
        history = self.prices()
        book = PriceBook(history)
        found = (book.at(model, when) for model in sorted({p.model for p in history}))
        return [price for price in found if price is not None]

    def set_price(self, model: str | None = None, /, **fields: Any) -> ModelPrice:
        """Add a price for ``model`` in USD per million tokens, in effect from
        ``effective_from`` (default now) on.

        Fields: input_usd_per_mtok and output_usd_per_mtok (required), cache_read_usd_per_mtok
        and cache_write_usd_per_mtok (default 0.1 and 1.25 times the input price: Anthropic's
        ratios), effective_from, actor. A price that looks per token ($0.000003) is refused.
        Events already stored keep the cost they were given.
        """
        values = clean_fields(with_positional(fields, model=model), PRICE_CLEANERS, "a price")
        now = utcnow()
        row = {
            "model": values["model"],
            "effective_from": values.get("effective_from") or now,
            "input_micro_per_mtok": values["input_usd_per_mtok"],
            "output_micro_per_mtok": values["output_usd_per_mtok"],
            "cache_read_micro_per_mtok": _or(values.get("cache_read_usd_per_mtok"),
                                             scaled(values["input_usd_per_mtok"], CACHE_READ_RATIO)),
            "cache_write_micro_per_mtok": _or(values.get("cache_write_usd_per_mtok"),
                                              scaled(values["input_usd_per_mtok"], CACHE_WRITE_RATIO)),
            "actor": values.get("actor"),
            "created_at": now,
        }
        with self._scope.writing() as conn:
            clash = conn.execute(
                sa.select(model_prices.c.id).where(
                    model_prices.c.model == row["model"], model_prices.c.effective_from == row["effective_from"])
            ).scalar()
            if clash is not None:
                raise ConflictError(
                    f"{row['model']} already has a price from {row['effective_from']:%Y-%m-%dT%H:%M:%SZ} "
                    f"(price {clash}); give another effective_from", price_id=clash)
            price_id = conn.execute(_INSERT_PRICE, row).inserted_primary_key[0]
        log.info("price of %s from %s set by %s", row["model"], row["effective_from"], row["actor"])
        return ModelPrice(id=price_id, **row)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
