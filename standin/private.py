"""The stand-in's private Bybit v5 REST API: signed requests, orders, position, executions, wallet.

Auth is Bybit's v5 HMAC scheme: headers ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``,
``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` = hex HMAC-SHA256(secret, timestamp + key + recvWindow +
(the query string of a GET | the raw JSON body of a POST)). A wrong key answers retCode 10003, a
wrong signature 10004 (with Bybit's ``origin_string``), a timestamp outside the window 10002.

Rate limits per key and endpoint over a sliding second: ``rate_limit`` (default 10, Bybit's
linear order create / amend / cancel limit) for order writes, five times that for queries; a
breach answers retCode 10006 with the ``X-Bapi-Limit*`` headers. Matching rules: account.py.

    GET  /v5/user/query-api           the key's permissions (ccxt: is the account unified?)
    GET  /v5/account/info             unifiedMarginStatus (ccxt, with query-api)
    GET  /v5/asset/coin/query-info    coins (ccxt's load_markets asks when it has keys)
    GET  /v5/account/fee-rate         maker / taker fee of the symbol
    GET  /v5/account/wallet-balance   accountType=UNIFIED: the USDT wallet
    GET  /v5/position/list            category=linear: the one-way position
    GET  /v5/order/realtime           open orders; any recent order by orderId / orderLinkId
    GET  /v5/execution/list           our fills, newest first (cursor paging)
    POST /v5/order/create | amend | cancel | cancel-all
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from aiohttp import web

from standin.account import Account, BookLike, Order, OrderError, decimals
from standin.rows import execution_row, order_row, position_row, wallet_row

PRIVATE_FAULTS: dict[str, str] = {
    "reject_orders": "for `seconds`, every new order is rejected (retCode 110007, not enough balance)",
    "rate_limit": "for `seconds`, every private request is answered retCode 10006 (too many visits)",
    "drop_response": "the next `count` requests to `on` (default create) are carried out, then their "
    "connections are closed without an answer",
    "drop_request": "the next `count` requests to `on` (default create) are not carried out: their "
    "connections are closed without an answer",
    "server_error": "the next `count` requests to `on` (default create) are not carried out and are "
    "answered retCode 10016 (Bybit's 'System error. Please try again later.')",
    "fill_after": "right after the answer to the next request to `on` (default position) is made, the "
    "oldest resting order fills `count` lots at its price (maker): the client's next read sees a fill "
    "its last one did not",
}

# The endpoints a counted fault (``on``) can target; ``lookup`` is order/realtime asked for one order
# (by orderId or orderLinkId), ``open_orders`` the same endpoint asked for the open ones.
ENDPOINTS: dict[str, str] = {
    "create": "/v5/order/create",
    "amend": "/v5/order/amend",
    "cancel": "/v5/order/cancel",
    "cancel_all": "/v5/order/cancel-all",
    "lookup": "/v5/order/realtime",
    "open_orders": "/v5/order/realtime",
    "executions": "/v5/execution/list",
    "position": "/v5/position/list",
    "wallet": "/v5/account/wallet-balance",
}
_COUNTED = ("drop_response", "drop_request", "server_error", "fill_after")
_BEFORE = ("drop_request", "server_error")  # faults that stand in for the handler


def fault_target(kind: str, on: str | None) -> str:
    """The endpoint name a counted fault applies to (``on``, or its default); ValueError if it has none."""
    if kind not in _COUNTED:
        if on is not None:
            raise ValueError(f"fault {kind!r} takes no endpoint (only {', '.join(_COUNTED)} do)")
        return ""
    on = on or ("position" if kind == "fill_after" else "create")
    if on not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {on!r} for fault {kind!r} (known: {', '.join(ENDPOINTS)})")
    return on


def endpoint_name(path: str, params: dict[str, Any]) -> str:
    """The ENDPOINTS name of a request ("" for the ones no fault targets)."""
    if path == "/v5/order/realtime":
        return "lookup" if params.get("orderId") or params.get("orderLinkId") else "open_orders"
    return next((name for name, p in ENDPOINTS.items() if p == path), "")


@dataclass
class _Trap:
    """A counted fault waiting for requests to one endpoint."""

    kind: str
    on: str
    left: int  # requests still to meet it
    lots: int = 0  # fill_after: the size of the fill


ORDER_WRITES = ("/v5/order/create", "/v5/order/amend", "/v5/order/cancel", "/v5/order/cancel-all")
Handler = Callable[[dict[str, Any], int], Awaitable[Any]]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _envelope(code: int, msg: str, result: Any, headers: dict[str, str] | None = None) -> web.Response:
    body = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": _now_ms()}
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)


@dataclass(frozen=True)
class PrivateSpec:
    """The one account the stand-in serves: its key pair, rate limit, fees and starting USDT."""

    api_key: str = "standin-key"
    api_secret: str = "standin-secret"  # noqa: S105 (the stand-in's public test credential)
    rate_limit: int = 10  # order writes per key, endpoint and second (queries: five times this)
    maker_fee: float = 0.0002  # Bybit VIP 0 perpetuals (config instrument.maker_fee / taker_fee)
    taker_fee: float = 0.00055
    balance: float = 100_000.0


def sign(secret: str, timestamp: str, key: str, recv_window: str, payload: str) -> str:
    """Bybit v5's X-BAPI-SIGN for a GET query string or a POST body."""
    text = timestamp + key + recv_window + payload
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class PrivateApi:
    """The private endpoints of one account (one accepted key / secret pair) on the stand-in."""

    def __init__(self, symbol: str, book: BookLike, tick: float, spec: PrivateSpec) -> None:
        self.symbol = symbol
        self.api_key = spec.api_key
        self.api_secret = spec.api_secret
        self.rate_limit = spec.rate_limit
        self.account = Account(
            symbol,
            book,
            tick,
            decimals(tick),
            maker_fee=spec.maker_fee,
            taker_fee=spec.taker_fee,
            balance=spec.balance,
        )
        self.stats: Counter[str] = Counter()
        self._windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._reject_until = 0.0
        self._limit_until = 0.0
        self._traps: list[_Trap] = []

    def register(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/v5/user/query-api", self._query_api),
            ("GET", "/v5/account/info", self._account_info),
            ("GET", "/v5/asset/coin/query-info", self._coins),
            ("GET", "/v5/account/fee-rate", self._fee_rate),
            ("GET", "/v5/account/wallet-balance", self._wallet),
            ("GET", "/v5/position/list", self._positions),
            ("GET", "/v5/order/realtime", self._realtime),
            ("GET", "/v5/execution/list", self._executions),
            ("POST", "/v5/order/create", self._create),
            ("POST", "/v5/order/amend", self._amend),
            ("POST", "/v5/order/cancel", self._cancel),
            ("POST", "/v5/order/cancel-all", self._cancel_all),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._endpoint(path, handler))

    # -- the feed drives matching --------------------------------------------------------------

    def on_trades(self, trades: list[dict[str, Any]]) -> None:
        if self.account.resting:
            self.account.on_trades(trades, _now_ms())

    def on_book(self) -> None:
        self.account.on_book(_now_ms())

    # -- faults and stats ----------------------------------------------------------------------

    def inject(self, kind: str, seconds: float, on: str | None = None, count: int = 1) -> None:
        """Apply a PRIVATE_FAULTS fault: for ``seconds``, or to the next ``count`` requests to ``on``."""
        target = fault_target(kind, on)
        if kind == "reject_orders":
            self._reject_until = time.monotonic() + seconds
        elif kind == "rate_limit":
            self._limit_until = time.monotonic() + seconds
        elif count < 1:
            raise ValueError(f"fault {kind!r}: count must be >= 1, not {count}")
        elif kind == "fill_after":
            self._traps.append(_Trap(kind, target, 1, lots=count))
        else:
            self._traps.append(_Trap(kind, target, count))

    def _sprung(self, name: str, kinds: tuple[str, ...]) -> _Trap | None:
        """The oldest counted fault of ``kinds`` waiting for ``name``, used once; None if there is none."""
        trap = next((t for t in self._traps if t.on == name and t.kind in kinds), None)
        if trap is None:
            return None
        trap.left -= 1
        if trap.left <= 0:
            self._traps.remove(trap)
        self.stats[f"fault_{trap.kind}_{name}"] += 1
        return trap

    def stats_dict(self) -> dict[str, Any]:
        acc = self.account
        return {
            **self.stats,
            "orders": len(acc.orders),
            "open_orders": len(acc.live()),
            "fills": len(acc.executions),
            "position": acc.position.size,
            "avg_price": acc.position.avg,
            "wallet_balance": acc.balance,
        }

    # -- the envelope: auth, rate limit, faults ------------------------------------------------

    def _endpoint(self, path: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            self.stats["private_requests"] += 1
            body = await request.text() if request.method == "POST" else ""
            payload = body if request.method == "POST" else request.rel_url.raw_query_string
            refused = self._authenticate(request, payload)
            if refused is not None:
                self.stats["auth_failures"] += 1
                return refused
            if path in ORDER_WRITES:
                self.stats["order_writes"] += 1
            headers, limited = self._throttle(path)
            if limited or time.monotonic() < self._limit_until:
                self.stats["rate_limited"] += 1
                return _envelope(10006, "Too many visits. Exceeded the API Rate Limit.", {}, headers)
            if request.method == "POST":
                try:
                    params = orjson.loads(body or b"{}")
                except orjson.JSONDecodeError:
                    params = None
                if not isinstance(params, dict):
                    return _envelope(10001, "params error: the body must be a JSON object", {}, headers)
            else:
                params = dict(request.query)
            name = endpoint_name(path, params)
            self.stats[f"calls_{name or path}"] += 1
            before = self._sprung(name, _BEFORE)
            if before is not None and before.kind == "drop_request":
                self.stats["dropped_requests"] += 1
                self._cut(request)
            if before is not None:  # server_error
                return _envelope(10016, "System error. Please try again later.", {}, headers)
            if path == "/v5/order/create" and time.monotonic() < self._reject_until:
                self.stats["rejected_by_fault"] += 1
                return _envelope(110007, "ab not enough for new order", {}, headers)
            try:
                self._check_symbol(path, params)
                result = await handler(params, _now_ms())
            except OrderError as err:
                self.stats[f"ret_{err.code}"] += 1
                return _envelope(err.code, err.msg, {}, headers)
            fill = self._sprung(name, ("fill_after",))
            if fill is not None:
                self.account.fill_oldest(fill.lots, _now_ms())
            if self._sprung(name, ("drop_response",)):
                self.stats["dropped_responses"] += 1
                self._cut(request)  # carried out, but the client never hears of it
            return _envelope(0, "OK", result, headers)

        return serve

    def _cut(self, request: web.Request) -> NoReturn:
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPServiceUnavailable()  # never written: the connection is gone

    def _authenticate(self, request: web.Request, payload: str) -> web.Response | None:
        h = request.headers
        key, ts, recv = h.get("X-BAPI-API-KEY", ""), h.get("X-BAPI-TIMESTAMP", ""), h.get("X-BAPI-RECV-WINDOW", "5000")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return _envelope(10003, "API key is invalid.", {})
        now = _now_ms()
        try:
            stamp, window = int(ts), int(recv)
        except ValueError:
            stamp, window = -1, 5000
        if not now - window <= stamp < now + 1000:
            msg = (
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{recv}]"
            )
            return _envelope(10002, msg, {})
        want = sign(self.api_secret, ts, key, recv, payload)
        if not hmac.compare_digest(want, h.get("X-BAPI-SIGN", "").lower()):
            return _envelope(10004, f"error sign! origin_string[{ts}{key}{recv}{payload}]", {})
        return None

    def _throttle(self, path: str) -> tuple[dict[str, str], bool]:
        limit = self.rate_limit if path in ORDER_WRITES else 5 * self.rate_limit
        window = self._windows[(self.api_key, path)]
        now = time.monotonic()
        while window and window[0] <= now - 1.0:
            window.popleft()
        limited = len(window) >= limit
        if not limited:
            window.append(now)
        reset_ms = _now_ms() + int(1000 * (window[0] + 1.0 - now)) if window else _now_ms()
        headers = {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(max(0, limit - len(window))),
            "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
        }
        return headers, limited

    def _check_symbol(self, path: str, p: dict[str, Any]) -> None:
        if not path.startswith(("/v5/order/", "/v5/position/", "/v5/execution/")):
            return
        if p.get("category") != "linear":
            raise OrderError(10001, "params error: category only support linear here")
        symbol = p.get("symbol")
        needs_symbol = path in ("/v5/order/create", "/v5/order/amend", "/v5/order/cancel")
        if (symbol or needs_symbol) and symbol != self.symbol:
            raise OrderError(10001, f"params error: symbol invalid (the stand-in trades {self.symbol})")

    # -- account endpoints ---------------------------------------------------------------------

    async def _query_api(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        return {
            "id": "1",
            "note": "stand-in",
            "apiKey": self.api_key,
            "readOnly": 0,
            "secret": "",
            "permissions": {"ContractTrade": ["Order", "Position"], "Spot": [], "Wallet": ["AccountTransfer"]},
            "ips": ["*"],
            "type": 1,
            "deadlineDay": -1,
            "expiredAt": "",
            "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0,
            "uta": 1,
            "userID": 1,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
        }

    async def _account_info(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        return {
            "unifiedMarginStatus": 6,
            "marginMode": "REGULAR_MARGIN",
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
            "updatedTime": str(now),
            "dcpStatus": "OFF",
            "timeWindow": 10,
            "smpGroup": 0,
        }

    async def _coins(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        rows = [
            {"name": coin, "coin": coin, "remainAmount": "1000000", "chains": []}
            for coin in ("USDT", self.symbol.removesuffix("USDT"))
        ]
        return {"rows": rows}

    async def _fee_rate(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        acc = self.account
        row = {"symbol": acc.symbol, "takerFeeRate": str(acc.taker_fee), "makerFeeRate": str(acc.maker_fee)}
        return {"list": [row]}

    async def _wallet(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        if p.get("accountType", "UNIFIED") != "UNIFIED":
            raise OrderError(10001, "accountType only support UNIFIED")
        return {"list": [wallet_row(self.account)]}

    async def _positions(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        return {"category": "linear", "list": [position_row(self.account, now)], "nextPageCursor": ""}

    # -- orders --------------------------------------------------------------------------------

    async def _realtime(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        acc = self.account
        one = p.get("orderId") or p.get("orderLinkId")
        if one:  # a single order, also when closed (Bybit keeps the recent ones)
            found = acc.find(p.get("orderId"), p.get("orderLinkId"))
            orders = [found] if found is not None else []
        else:
            closed_too = str(p.get("openOnly", "0")) != "0"
            orders = [o for o in reversed(acc.orders) if o.open or closed_too][:500]
        rows, cursor = _page([order_row(acc, o) for o in orders], p, 20, 50)
        return {"category": "linear", "list": rows, "nextPageCursor": cursor}

    async def _executions(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        start, end = int(p.get("startTime") or 0), int(p.get("endTime") or now + 1)
        rows = [
            execution_row(self.account, e)
            for e in reversed(self.account.executions)
            if start <= e.time_ms <= end
            and p.get("orderId") in (None, "", e.order.order_id)
            and p.get("orderLinkId") in (None, "", e.order.link_id)
        ]
        page, cursor = _page(rows, p, 50, 100)
        return {"category": "linear", "list": page, "nextPageCursor": cursor}

    async def _create(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        o = self.account.create(p, now)
        self.stats["orders_created"] += 1
        return _ids(o)

    async def _amend(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        return _ids(self.account.amend(p, now))

    async def _cancel(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        return _ids(self.account.cancel(p, now))

    async def _cancel_all(self, p: dict[str, Any], now: int) -> dict[str, Any]:
        return {"list": [_ids(o) for o in self.account.cancel_all(now)], "success": "1"}


def _ids(o: Order) -> dict[str, Any]:
    return {"orderId": o.order_id, "orderLinkId": o.link_id}


def _page(rows: list[dict[str, Any]], p: dict[str, Any], default: int, most: int) -> tuple[list[dict[str, Any]], str]:
    """Bybit's cursor paging (the cursor here is an offset)."""
    try:
        limit = min(most, max(1, int(p.get("limit") or default)))
        offset = int(p.get("cursor") or 0)
    except ValueError as err:
        raise OrderError(10001, "params error: limit or cursor") from err
    page = rows[offset : offset + limit]
    return page, (str(offset + limit) if offset + limit < len(rows) else "")
