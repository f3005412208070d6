"""``lobstore costs``: what the fleet spent (a summary by default), one task's costs, prices."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .support import format_table, store_from_args
from ..models import BUDGET_PERIODS, BUDGET_SCOPES, Budget, CostTotals, ModelPrice
from ..repositories.costs import GROUPINGS, PERIODS

DESCRIPTION = """\
Summaries of LLM costs: the last day by default, grouped by model.

  lobstore costs                          last 24 h by model
  lobstore costs --period week --group-by agent
  lobstore costs --since 2026-02-01 --until 2026-03-01 --group-by day
  lobstore costs --task T42               one task's totals, by model
  lobstore costs prices                   the price of each model now (and --all for history)
  lobstore costs set-price claude-opus-4-6 --input 5 --output 25 --from 2026-03-01
  lobstore costs budgets                  budgets and what they spent this period
  lobstore costs budgets set --scope fleet --period day --limit 200 [--hard]
"""


def register(commands: Any) -> None:
    costs = commands.add_parser("costs", help="cost summaries, a task's costs, model prices",
                                description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    costs.add_argument("--period", choices=list(PERIODS), help="the last day (24 h), week (7 days) or month (30 days)")
    costs.add_argument("--since", metavar="ISO", help="start of the range (inclusive), e.g. 2026-02-01")
    costs.add_argument("--until", metavar="ISO", help="end of the range (exclusive; default now)")
    costs.add_argument("--group-by", choices=GROUPINGS, default="model", help="default: model")
    costs.add_argument("--model", help="only this model")
    costs.add_argument("--agent", help="only this agent")
    costs.add_argument("--task", metavar="TASK", help="one task's totals (T42, 42 or a legacy id)")
    costs.add_argument("--json", action="store_true", help="print JSON")
    costs.set_defaults(run=cmd_costs)
    actions = costs.add_subparsers(dest="costs_command", metavar="ACTION")

    prices = actions.add_parser("prices", help="list model prices (USD per million tokens)")
    prices.add_argument("--all", action="store_true", help="every price with the date it took effect")
    prices.add_argument("--json", action="store_true", help="print JSON")
    prices.set_defaults(run=cmd_prices)

    set_price = actions.add_parser(
        "set-price", help="add a model's price (USD per million tokens) from a date on",
        description="Add a price in USD per MILLION tokens. Cache prices default to 0.1 (read) and "
                    "1.25 (write) times the input price. Events already stored keep their cost.")
    set_price.add_argument("model")
    set_price.add_argument("--input", type=str, required=True, metavar="USD", help="per million input tokens")
    set_price.add_argument("--output", type=str, required=True, metavar="USD", help="per million output tokens")
    set_price.add_argument("--cache-read", type=str, metavar="USD")
    set_price.add_argument("--cache-write", type=str, metavar="USD")
    set_price.add_argument("--from", dest="effective_from", metavar="ISO", help="in effect from (default now)")
    set_price.add_argument("--actor", default="cli")
    set_price.set_defaults(run=cmd_set_price)

    reprice = actions.add_parser(
        "reprice", help="re-price a model's table-priced events at the prices now",
        description="Recompute the cost of MODEL's events from SINCE (to UNTIL) that were priced from the "
                    "table (never a cost the caller reported), with the price table as it is now. Prints old "
                    "and new totals per day; --dry-run writes nothing. Rollups and budgets follow; the run "
                    "is recorded. Running it again changes nothing.")
    reprice.add_argument("--model", required=True)
    reprice.add_argument("--since", required=True, metavar="ISO", help="from (inclusive)")
    reprice.add_argument("--until", metavar="ISO", help="to (exclusive; default now)")
    reprice.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    reprice.add_argument("--actor", default="cli")
    reprice.add_argument("--json", action="store_true", help="print JSON")
    reprice.set_defaults(run=cmd_reprice)

    budgets = actions.add_parser("budgets", help="spending limits and their alerts (list by default)")
    budgets.add_argument("--all", action="store_true", help="the removed budgets too")
    budgets.add_argument("--json", action="store_true", help="print JSON")
    budgets.set_defaults(run=cmd_budgets)
    budget_actions = budgets.add_subparsers(dest="budget_command", metavar="ACTION")
    set_budget = budget_actions.add_parser(
        "set", help="set a budget",
        description="A limit in USD per UTC day, week (from Monday), month or in total, on a task, a task "
                    "type, a model, an agent or the whole fleet. Crossing 80 %% and 100 %% raises an alert "
                    "once per period; a hard budget makes the task's budget answer exhausted.")
    set_budget.add_argument("--scope", choices=list(BUDGET_SCOPES), required=True)
    set_budget.add_argument("--target", help="the task (T42), task type, model or agent; none for the fleet")
    set_budget.add_argument("--period", choices=list(BUDGET_PERIODS), required=True)
    set_budget.add_argument("--limit", required=True, metavar="USD", help="the limit in US dollars")
    set_budget.add_argument("--hard", action="store_true", help="exhausted at 100 %% (default: advisory)")
    set_budget.add_argument("--actor", default="cli")
    set_budget.set_defaults(run=cmd_set_budget)
    remove_budget = budget_actions.add_parser("remove", help="remove a budget (kept as removed)")
    remove_budget.add_argument("budget_id", type=int)
    remove_budget.set_defaults(run=cmd_remove_budget)
    alerts = budget_actions.add_parser("alerts", help="the alert feed: 80 %% and 100 %% crossings")
    alerts.add_argument("--after", type=int, default=0, metavar="ID")
    alerts.add_argument("--json", action="store_true", help="print JSON")
    alerts.set_defaults(run=cmd_budget_alerts)


def cmd_costs(args: argparse.Namespace) -> int:
    with store_from_args(args, read_only=True) as store:
        if args.task:
            task = store.costs.for_task(args.task)
            result: Any = task
            title = f"{task.task_ref}: {_money(task.totals.cost_micro)} in {_events(task.totals.events)}"
            groups, heading = task.models, "MODEL"
        else:
            summary = store.costs.summary(
                period=args.period, since=args.since, until=args.until, group_by=args.group_by,
                model=args.model, agent=args.agent)
            result = summary
            title = (f"{_money(summary.totals.cost_micro)} in {_events(summary.totals.events)}, "
                     f"{summary.to_dict()['since']} to {summary.to_dict()['until']}")
            if summary.pruned_before is not None:
                title += (f" (raw events before {summary.to_dict()['pruned_before']} were pruned: "
                          "summed from the rollups)")
            groups, heading = summary.groups, args.group_by.upper().replace("_", " ")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(title)
    if groups:
        print()
        print(totals_table(heading, groups))
    return 0


def totals_table(heading: str, groups: tuple[CostTotals, ...]) -> str:
    rows = [[g.key or "-", _money(g.cost_micro), f"{g.events:,}", f"{g.input_tokens:,}", f"{g.output_tokens:,}",
             f"{g.cache_read_tokens + g.cache_write_tokens:,}", f"{g.uncosted_events:,}" if g.uncosted_events else ""]
            for g in groups]
    return format_table([heading, "COST", "EVENTS", "INPUT", "OUTPUT", "CACHE", "UNCOSTED"], rows)


def cmd_prices(args: argparse.Namespace) -> int:
    with store_from_args(args, read_only=True) as store:
        prices = store.costs.prices() if args.all else store.costs.current_prices()
    if args.json:
        print(json.dumps([p.to_dict() for p in prices], indent=2))
        return 0
    print(prices_table(prices))
    return 0


def prices_table(prices: list[ModelPrice]) -> str:
    rows = [[p.model, *(_price(v) for v in p.per_mtok), p.to_dict()["effective_from"]] for p in prices]
    return format_table(["MODEL", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE", "FROM"], rows)


def cmd_set_price(args: argparse.Namespace) -> int:
    fields = {"input_usd_per_mtok": args.input, "output_usd_per_mtok": args.output,
              "cache_read_usd_per_mtok": args.cache_read, "cache_write_usd_per_mtok": args.cache_write,
              "effective_from": args.effective_from, "actor": args.actor}
    with store_from_args(args) as store:
        price = store.costs.set_price(args.model, **{k: v for k, v in fields.items() if v is not None})
    print(f"price {price.id} of {price.model} from {price.to_dict()['effective_from']} (USD per million tokens):")
    print(prices_table([price]))
    return 0


def cmd_reprice(args: argparse.Namespace) -> int:
    fields = {"since": args.since, "until": args.until, "dry_run": args.dry_run, "actor": args.actor}
    with store_from_args(args, read_only=args.dry_run) as store:
        result = store.costs.reprice(args.model, **{k: v for k, v in fields.items() if v is not None})
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    rows = [[d.day, d.model, f"{d.events:,}", f"{d.changed_events:,}", _money(d.old_micro), _money(d.new_micro),
             _signed(d.new_micro - d.old_micro)] for d in result.days]
    if rows:
        print(format_table(["DAY", "MODEL", "EVENTS", "CHANGED", "OLD", "NEW", "DELTA"], rows))
        print()
    change = (f"{result.changed_events:,} of {_events(result.events)} priced from the table, "
              f"{_money(result.old_micro)} -> {_money(result.new_micro)} ({_signed(result.new_micro - result.old_micro)})")
    print(f"dry run, nothing written: would change {change}" if result.dry_run
          else f"re-pricing run {result.run_id}: changed {change}")
    return 0


def _signed(micro: int) -> str:
    return ("-" if micro < 0 else "+") + _money(abs(micro))


def cmd_budgets(args: argparse.Namespace) -> int:
    with store_from_args(args, read_only=True) as store:
        found = store.budgets.list(include_removed=args.all)
    if args.json:
        print(json.dumps([b.to_dict() for b in found], indent=2))
        return 0
    print(budgets_table(found) if found else "no budgets")
    return 0


def budgets_table(found: list[Budget]) -> str:
    rows = [[str(b.id), b.scope, b.to_dict()["target"] or "-", b.period, _money(b.limit_micro),
             _money(b.spent_micro), "hard" if b.hard else "advisory", "removed" if b.removed_at else b.state]
            for b in found]
    return format_table(["ID", "SCOPE", "TARGET", "PERIOD", "LIMIT", "SPENT", "MODE", "STATE"], rows)


def cmd_set_budget(args: argparse.Namespace) -> int:
    fields = {"scope": args.scope, "target": args.target, "period": args.period, "limit_usd": args.limit,
              "hard": args.hard, "actor": args.actor}
    with store_from_args(args) as store:
        budget = store.budgets.create(**{k: v for k, v in fields.items() if v is not None})
    print(f"budget {budget.id} set:")
    print(budgets_table([budget]))
    return 0


def cmd_remove_budget(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        budget = store.budgets.remove(args.budget_id, actor="cli")
    print(f"budget {budget.id} removed")
    return 0


def cmd_budget_alerts(args: argparse.Namespace) -> int:
    with store_from_args(args, read_only=True) as store:
        alerts = store.budgets.alerts(after=args.after, limit=1000)
    if args.json:
        print(json.dumps([a.to_dict() for a in alerts], indent=2))
        return 0
    rows = [[str(a.id), str(a.budget_id), a.to_dict()["period_start"], f"{a.threshold} %", _money(a.spent_micro),
             _money(a.limit_micro), a.to_dict()["created_at"]] for a in alerts]
    print(format_table(["ID", "BUDGET", "PERIOD FROM", "CROSSED", "SPENT", "LIMIT", "AT"], rows) if rows else "no alerts")
    return 0


def _money(micro: int) -> str:
    """Cents from $100 up; below that four decimals, so small agents' costs do not show as $0.00."""
    return f"${micro / 1_000_000:,.2f}" if micro >= 100_000_000 else f"${micro / 1_000_000:,.4f}"


def _price(micro_per_mtok: int) -> str:
    """At least cents, and every digit a price has ($0.80, $6.25, $0.075)."""
    text = f"{micro_per_mtok / 1_000_000:,.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def _events(count: int) -> str:
    return "1 event" if count == 1 else f"{count:,} events"
