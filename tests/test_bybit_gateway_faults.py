"""The live gateway's paths through lost answers, failed lookups, paging and restarts, with the
real ccxt client against the stand-in's private Bybit v5 API (issue 14, item 6).

Every fault is the stand-in's (``standin.private.PRIVATE_FAULTS``): a request to one endpoint
dropped before or after it is carried out, answered with a system error, or a fill slipped in
right after an answer. Each test shows what the gateway sends (the stand-in counts the calls to
each endpoint), what ends in its events and books, that nothing is counted twice and that no
client order id is used for two orders.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from core.config import AppConfig
from core.errors import UnavailableError
from execution.types import OrderKind
from live.bybit_gateway import BybitGateway
from standin import BackgroundStandin
from standin.feeds import SimFeed
from standin.private import PrivateSpec
from tests.conftest import ConfigFactory
from tests.test_bybit_gateway import FAR, KEY, SECRET, TICK, _book, _gateway, _kinds, _open_on_exchange, _private, _run
from tests.test_bybit_gateway import _until as _until_done


@pytest.fixture
def standin() -> Iterator[BackgroundStandin]:
    cfg = AppConfig()
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50), private=PrivateSpec(KEY, SECRET)) as server:
        yield server


@pytest.fixture
def cfg(standin: BackgroundStandin, make_config: ConfigFactory) -> AppConfig:
    return make_config(bybit={"rest_url": standin.url, "ws_public_url": standin.ws_url, "timeout": "3s"})


# -- helpers ---------------------------------------------------------------------------------


def _calls(server: BackgroundStandin, endpoint: str) -> int:
    """How many requests to one endpoint (standin.private.ENDPOINTS) reached the stand-in."""
    return int(server.stats()["private"].get(f"calls_{endpoint}", 0))


def _stat(server: BackgroundStandin, name: str) -> int:
    return int(server.stats()["private"].get(name, 0))


def _far_bid(server: BackgroundStandin, ticks: int = 40) -> float:
    return round(_book(server).bid - (ticks + FAR) * TICK, 1)


def _order(server: BackgroundStandin, link: str) -> dict[str, Any]:
    res, _ = _private(server, "GET", "/v5/order/realtime", {"category": "linear", "orderLinkId": link})
    (row,) = res["result"]["list"]
    return dict(row)


async def _polls(gw: BybitGateway, server: BackgroundStandin, n: int = 2) -> None:
    """Sync until the gateway has polled ``n`` more times: whatever was due (retries) has been done."""
    target = _calls(server, "open_orders") + n
    await _until_done(gw, lambda: _calls(server, "open_orders") >= target)


def _details(events: list[dict[str, Any]], kind: str) -> list[str]:
    return [str(e.get("detail", "")) for e in events if e["kind"] == kind]


def _one_line_errors(events: list[dict[str, Any]], what: str) -> list[str]:
    errors = [d for d in _details(events, "error") if d.startswith(f"{what}: ")]
    assert all("\n" not in d and KEY not in d and SECRET not in d for d in errors)
    return errors


# -- cancels ---------------------------------------------------------------------------------


def test_sync_before_start_is_a_clear_error(cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        gw.submit(1, 0.01, 100.0)
        with pytest.raises(RuntimeError, match=r"sync\(\) before start\(\)"):
            await gw.sync()

    _run(go)


def test_a_cancel_whose_answer_is_lost_ends_cancelled_once(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            oid = gw.submit(1, 0.01, _far_bid(standin))
            await gw.sync()
            standin.inject("drop_response", on="cancel")
            gw.cancel(oid)
            await _until_done(gw, lambda: not gw.open_orders())
            await _polls(gw, standin)  # a retry that came due has been dealt with
            assert _stat(standin, "dropped_responses") == 1 and _calls(standin, "cancel") >= 1
            assert _calls(standin, "cancel") == 1 + _stat(standin, "ret_110001")  # a retry found nothing to cancel
            assert _order(standin, f"t1-{oid}")["orderStatus"] == "Cancelled" and _open_on_exchange(standin) == []
            events = gw.take_events()
            kinds = [k for k in _kinds(events, oid) if k != "refused"]  # a retry's "too late", if it went out
            assert kinds == ["submit", "ack", "cancel", "error", "cancelled"]
            (error,) = _one_line_errors(events, "cancel")
            assert "NetworkError" in error or "RequestTimeout" in error or "ExchangeNotAvailable" in error
            assert gw.errors == 1
        finally:
            await gw.aclose()

    _run(go)


def test_a_lost_cancel_is_sent_again_until_done(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            oid = gw.submit(1, 0.01, _far_bid(standin))
            await gw.sync()
            standin.inject("drop_request", on="cancel")
            gw.cancel(oid)
            await gw.sync()
            assert [o.order_id for o in gw.open_orders()] == [oid]  # not cancelled: still open on both sides
            assert len(_open_on_exchange(standin)) == 1
            await _until_done(gw, lambda: not gw.open_orders())
            assert (_stat(standin, "dropped_requests"), _calls(standin, "cancel")) == (1, 2)
            assert _open_on_exchange(standin) == []
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "ack", "cancel", "error", "ack", "cancelled"]
            assert len(_one_line_errors(events, "cancel")) == 1 and gw.errors == 1
        finally:
            await gw.aclose()

    _run(go)


def test_a_cancel_answered_with_a_system_error_is_sent_again(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            oid = gw.submit(-1, 0.01, round(_book(standin).ask + (40 + FAR) * TICK, 1))
            await gw.sync()
            standin.inject("server_error", on="cancel", count=2)  # Bybit's 10016: try again later
            gw.cancel(oid)
            await _until_done(gw, lambda: not gw.open_orders())
            assert _calls(standin, "cancel") == 3 and _open_on_exchange(standin) == []
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "ack", "cancel", "error", "error", "ack", "cancelled"]
            errors = _one_line_errors(events, "cancel")
            assert len(errors) == 2 and all("10016" in e for e in errors)
        finally:
            await gw.aclose()

    _run(go)


def test_a_cancel_all_whose_request_is_lost_is_sent_again_and_spares_orders_sent_after_it(
    standin: BackgroundStandin, cfg: AppConfig
) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            first = [gw.submit(1, 0.01, _far_bid(standin, 40 + i)) for i in range(2)]
            await gw.sync()
            standin.inject("drop_request", on="cancel")  # the first order's cancel never reaches Bybit
            gw.cancel_all()
            await gw.sync()
            assert [o.order_id for o in gw.open_orders()] == first[:1]  # the other one is cancelled
            later = gw.submit(1, 0.01, _far_bid(standin, 50))  # the strategy goes on before the retry
            await _until_done(gw, lambda: [o.order_id for o in gw.open_orders()] == [later])
            await _polls(gw, standin)
            (row,) = _open_on_exchange(standin)
            assert row["orderLinkId"] == f"t1-{later}"  # the retry cancelled what it was asked to, only
            events = gw.take_events()
            assert sorted(e["order_id"] for e in events if e["kind"] == "cancelled") == first
            assert len(_one_line_errors(events, "cancel")) == 1
            assert _calls(standin, "cancel_all") == 0  # never Bybit's cancel-all (it takes every order)
            assert (
                _stat(standin, "orders_created") == 3
                and len({e["client_id"] for e in events if e["kind"] == "submit"}) == 3
            )
        finally:
            await gw.aclose()

    _run(go)


def test_a_cancel_all_whose_answer_is_lost_cancels_each_order_once(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            ids = [gw.submit(1, 0.01, _far_bid(standin, 40 + i)) for i in range(2)]
            await gw.sync()
            standin.inject("drop_response", on="cancel")  # carried out, its answer lost
            gw.cancel_all()
            await _until_done(gw, lambda: not gw.open_orders())
            await _polls(gw, standin)
            assert _stat(standin, "dropped_responses") == 1 and _open_on_exchange(standin) == []
            events = gw.take_events()
            assert sorted(e["order_id"] for e in events if e["kind"] == "cancelled") == ids  # once each
            assert len(_one_line_errors(events, "cancel")) == 1
        finally:
            await gw.aclose()

    _run(go)


# -- creates whose fate is unknown -----------------------------------------------------------


def test_requests_wait_while_a_lookup_fails_then_are_sent_in_order(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            price = _far_bid(standin)
            standin.inject("drop_response")  # the create is carried out, its answer lost
            standin.inject("server_error", on="lookup", count=2)  # and the exchange cannot say, twice
            oid = gw.submit(1, 0.02, price)
            await gw.sync()
            assert [o.order_id for o in gw.open_orders()] == [oid]  # unknown: still the strategy's order
            gw.amend(oid, price=round(price - 10 * TICK, 1))
            gw.cancel(oid)
            await gw.sync()  # the lookup fails again: both wait, nothing is sent blind
            assert (_calls(standin, "create"), _calls(standin, "amend"), _calls(standin, "cancel")) == (1, 0, 0)
            await _until_done(gw, lambda: not gw.open_orders())
            assert (_calls(standin, "create"), _calls(standin, "amend"), _calls(standin, "cancel")) == (1, 1, 1)
            row = _order(standin, f"t1-{oid}")
            assert row["orderStatus"] == "Cancelled" and float(row["price"]) == round(price - 10 * TICK, 1)
            events = gw.take_events()
            kinds = ["submit", "error", "error", "amend", "cancel", "error", "ack", "ack", "ack", "cancelled"]
            assert _kinds(events, oid) == kinds
            assert len(_one_line_errors(events, "lookup")) == 2 and len(_one_line_errors(events, "submit")) == 1
            assert [d for d in _details(events, "ack")][:3] == [
                f"recovered orderId={row['orderId']}",
                "amend",
                "cancel",
            ]
            assert _stat(standin, "orders_created") == 1 and "ret_110072" not in standin.stats()["private"]
        finally:
            await gw.aclose()

    _run(go)


@pytest.mark.parametrize("failed_lookups", [1, 2])  # the cancel is still queued, or already waiting
def test_a_cancelled_order_the_exchange_never_got_is_never_sent(
    standin: BackgroundStandin, cfg: AppConfig, failed_lookups: int
) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            standin.inject("drop_request")  # the create never reaches the matching engine
            standin.inject("server_error", on="lookup", count=failed_lookups)  # nor can the exchange say
            oid = gw.submit(1, 0.01, _far_bid(standin))
            await gw.sync()
            gw.cancel(oid)
            await _until_done(gw, lambda: not gw.open_orders())
            assert _calls(standin, "lookup") == failed_lookups + 1
            await _polls(gw, standin)
            assert _calls(standin, "create") == 1 and _calls(standin, "cancel") == 0
            assert _stat(standin, "orders") == 0 and _open_on_exchange(standin) == []
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "error", "error", "cancel"] + ["error"] * (failed_lookups - 1) + [
                "cancelled"
            ]
            assert events[-1]["detail"] == "cancelled before it reached the exchange"
        finally:
            await gw.aclose()

    _run(go)


def test_a_create_the_exchange_never_gets_is_given_up_after_three_resends(
    standin: BackgroundStandin, cfg: AppConfig
) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            standin.inject("drop_request", count=4)
            oid = gw.submit(1, 0.01, _far_bid(standin))
            assert await gw.sync()
            assert gw.open_orders() == [] and _calls(standin, "create") == 4 and _stat(standin, "orders") == 0
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "error", "error", "error", "error", "reject"]
            assert events[-1]["detail"] == "the exchange does not know it after 3 sends: given up"
            assert len(_one_line_errors(events, "submit")) == 4 and gw.errors == 5
            again = gw.submit(1, 0.01, _far_bid(standin))  # a new order: a new client id
            await gw.sync()
            (row,) = _open_on_exchange(standin)
            assert again == oid + 1 and row["orderLinkId"] == f"t1-{again}"
        finally:
            await gw.aclose()

    _run(go)


# -- amends ----------------------------------------------------------------------------------


def test_amends_that_cannot_apply_are_refused(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            market = gw.submit(1, 0.01, kind=OrderKind.MARKET)
            gw.amend(market, qty=0.02)  # a market order cannot be amended: never sent
            price = _far_bid(standin)
            limit = gw.submit(1, 0.01, price)
            await gw.sync()
            gw.amend(limit, price=price, qty=0.01)  # the same price and size: Bybit says nothing changes
            await gw.sync()
            gw.cancel(limit)
            await _until_done(gw, lambda: not gw.open_orders())
            gw.amend(limit, price=round(price - TICK, 1))  # done: never sent
            await gw.sync()
            assert _calls(standin, "amend") == 1
            events = gw.take_events()
            assert _details([e for e in events if e.get("order_id") == market], "refused") == [
                "amend: a market order cannot be amended"
            ]
            assert _details([e for e in events if e.get("order_id") == limit], "refused") == [
                "amend: nothing to change",
                "amend: the order is no longer open",
            ]
            assert gw.errors == 0 and gw.position() == pytest.approx(0.01)
        finally:
            await gw.aclose()

    _run(go)


def test_an_amend_too_late_is_refused_and_the_lookup_says_why(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            price = _far_bid(standin)
            oid = gw.submit(1, 0.01, price)
            await gw.sync()
            params = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": f"t1-{oid}"}
            res, _ = _private(standin, "POST", "/v5/order/cancel", params)  # someone cancels it on the site
            assert res["retCode"] == 0
            gw.amend(oid, price=round(price - TICK, 1))
            await _until_done(gw, lambda: not gw.open_orders())
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "ack", "amend", "refused", "cancelled"]
            assert events[-2]["detail"] == "amend: too late, the order is no longer open"
            assert events[-1]["detail"] == "CancelByUser" and events[-1]["price"] == price
            assert gw.errors == 0
        finally:
            await gw.aclose()

    _run(go)


def test_an_amend_whose_answer_is_lost_is_read_back_from_the_exchange(
    standin: BackgroundStandin, cfg: AppConfig
) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            price = _far_bid(standin)
            oid = gw.submit(1, 0.03, price)
            await gw.sync()
            standin.inject("drop_response", on="amend")
            moved = round(price - 10 * TICK, 1)
            gw.amend(oid, price=moved, qty=0.02)
            await _until_done(gw, lambda: [(o.price, o.qty) for o in gw.open_orders()] == [(moved, 0.02)])
            await _polls(gw, standin)
            (row,) = _open_on_exchange(standin)
            assert (float(row["price"]), float(row["qty"])) == (moved, 0.02)
            assert _calls(standin, "amend") == 1  # an amend is not sent again: the exchange had it
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "ack", "amend", "error"]
            assert len(_one_line_errors(events, "amend")) == 1 and gw.errors == 1
        finally:
            await gw.aclose()

    _run(go)


# -- polls -----------------------------------------------------------------------------------


def test_an_order_gone_from_the_list_is_looked_up_until_the_lookup_answers(
    standin: BackgroundStandin, cfg: AppConfig
) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            oid = gw.submit(1, 0.01, _far_bid(standin))
            await gw.sync()
            standin.inject("server_error", on="lookup")
            params = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": f"t1-{oid}"}
            assert _private(standin, "POST", "/v5/order/cancel", params)[0]["retCode"] == 0
            await _until_done(gw, lambda: not gw.open_orders())
            assert _calls(standin, "lookup") == 2
            events = gw.take_events()
            assert _kinds(events, oid) == ["submit", "ack", "error", "cancelled"]
            assert len(_one_line_errors(events, "lookup")) == 1 and events[-1]["detail"] == "CancelByUser"
        finally:
            await gw.aclose()

    _run(go)


def _walk_the_book(server: BackgroundStandin, fills: int) -> None:
    """Market orders of another client, each walking the book: at least ``fills`` executions."""
    n = 0
    while _stat(server, "fills") < fills:
        n += 1
        side = "Buy" if n % 2 else "Sell"
        order = {"category": "linear", "symbol": "BTCUSDT", "side": side, "orderType": "Market", "qty": "500"}
        res, _ = _private(server, "POST", "/v5/order/create", order | {"orderLinkId": f"other-{n}"})
        assert res["retCode"] == 0


def test_executions_beyond_one_page_are_all_applied_once(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        gw = _gateway(cfg)
        await gw.start()
        try:
            _walk_the_book(standin, 150)  # more than one page (100) of executions between two polls
            fills = _stat(standin, "fills")
            before = _calls(standin, "executions")
            await gw.sync()
            assert _calls(standin, "executions") - before == fills // 100 + 1  # every page, then no more
            events = gw.take_events()
            mine = [e for e in events if e["kind"] == "fill"]
            assert len(mine) == fills and all("orderLinkId=other-" in e["detail"] for e in mine)
            exchange = standin.stats()["private"]["position"]
            assert gw.position() == pytest.approx(exchange, abs=1e-9) and gw.position() != 0.0
            await _polls(gw, standin)
            assert [e for e in gw.take_events() if e["kind"] == "fill"] == []  # none applied twice
        finally:
            await gw.aclose()

        again = _gateway(cfg)  # a restart reads every page and applies none: they are in the position
        await again.start()
        try:
            assert again.position() == pytest.approx(standin.stats()["private"]["position"], abs=1e-9)
            assert [e for e in again.take_events() if e["kind"] == "fill"] == []
        finally:
            await again.aclose()

    _run(go)


# -- restarts --------------------------------------------------------------------------------


def test_a_start_that_meets_system_errors_tries_again_then_gives_up_in_one_line(
    standin: BackgroundStandin, cfg: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Bybit's 10016 ("try again later") on the position read at start: the start tries again,
    ``start_backoff`` apart and doubling, and starts on its third try; a fault that outlasts its
    ``start_tries`` ends in one line naming the tries and the cause, and keeps no exchange open."""
    cfg = cfg.model_copy(update={"bybit": cfg.bybit.model_copy(update={"start_backoff": 50_000_000})})
    assert cfg.bybit.start_tries == 3

    async def go() -> None:
        standin.inject("server_error", on="position", count=2)
        gw = _gateway(cfg)
        await gw.start()
        try:
            assert _calls(standin, "position") == 3 and gw.exchange is not None
            assert gw.ledger.position == 0.0 and not gw.ledger.orders
        finally:
            await gw.aclose()
        standin.inject("server_error", on="position", count=3)
        with pytest.raises(UnavailableError) as err:
            await gw.start()
        text = str(err.value)
        assert "cannot start" in text and "(after 3 tries)" in text and '"retCode":10016' in text
        assert "\n" not in text and KEY not in text and SECRET not in text
        assert _calls(standin, "position") == 6 and gw.exchange is None

    with caplog.at_level(logging.WARNING, logger="live.bybit_gateway"):
        _run(go)
    tries = [r.getMessage() for r in caplog.records if "start try" in r.getMessage()]
    assert [t.split(" at ")[0] for t in tries] == [f"bybit: start try {i} of 3" for i in (1, 2, 1, 2)]
    assert [t.rsplit("again in ", 1)[1] for t in tries] == ["0.05 s", "0.1 s"] * 2


@pytest.mark.parametrize("after", ["position", "open_orders"])
def test_a_fill_during_the_restore_is_counted_once(standin: BackgroundStandin, cfg: AppConfig, after: str) -> None:
    async def go() -> None:
        before = _gateway(cfg, "run8")
        await before.start()
        price = _far_bid(standin)
        oid = before.submit(1, 0.02, price)
        await before.sync()
        known = {e["client_id"]: e["order_id"] for e in before.take_events() if e["kind"] == "submit"}
        await before.aclose()  # a crash: nothing cancelled

        standin.inject("fill_after", on=after, count=5)  # 0.005 fills right after that read
        gw = _gateway(cfg, "run8")
        await gw.start(known)
        try:
            assert _stat(standin, f"fault_fill_after_{after}") == 1
            (o,) = gw.open_orders()
            assert (o.order_id, o.qty) == (oid, 0.02) and o.filled == pytest.approx(0.005)
            assert gw.position() == pytest.approx(0.005) == pytest.approx(standin.stats()["private"]["position"])
            events = gw.take_events()
            assert _kinds(events) == ["ack", "fill"]
            assert events[1]["order_id"] == oid and events[1]["qty"] == pytest.approx(0.005)
            assert events[1]["filled"] == pytest.approx(0.005)
            await _polls(gw, standin)
            (o,) = gw.open_orders()
            assert o.filled == pytest.approx(0.005) and gw.position() == pytest.approx(0.005)
            assert gw.take_events() == []
        finally:
            await gw.aclose()

    _run(go)


def test_open_orders_of_another_run_are_left_alone(standin: BackgroundStandin, cfg: AppConfig) -> None:
    async def go() -> None:
        other = _gateway(cfg, "other")
        await other.start()
        theirs = other.submit(1, 0.01, _far_bid(standin))
        await other.sync()
        await other.aclose()
        mine = _gateway(cfg, "mine")
        await mine.start({})
        try:
            assert mine.open_orders() == [] and mine.take_events() == []
            await _polls(mine, standin)
            (row,) = _open_on_exchange(standin)
            assert row["orderLinkId"] == f"other-{theirs}" and row["orderStatus"] == "New"
            oid = mine.submit(1, 0.01, _far_bid(standin, 45))
            await mine.sync()
            assert {r["orderLinkId"] for r in _open_on_exchange(standin)} == {f"other-{theirs}", f"mine-{oid}"}
            assert _calls(standin, "cancel") == 0 and _calls(standin, "cancel_all") == 0
            mine.cancel_all()  # the kill switch's: ours only, never the other run's (nor a person's)
            await _until_done(mine, lambda: not mine.open_orders())
            await _polls(mine, standin)
            (row,) = _open_on_exchange(standin)
            assert row["orderLinkId"] == f"other-{theirs}" and _calls(standin, "cancel_all") == 0
        finally:
            await mine.aclose()

    _run(go)
