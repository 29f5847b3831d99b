"""Bybit v5 JSON shapes of the stand-in account's records: orders, executions, position, wallet.

Fields this stand-in has no use for carry Bybit's empty values, so a client that reads them
(ccxt's parsers do) finds them. Prices have the instrument's decimals, sizes three.
"""

from __future__ import annotations

import math
from typing import Any

from standin.account import EPS, Account, Execution, Order


def _num(x: float, dec: int) -> str:
    return f"{x:.{dec}f}"


def _amount(x: float) -> str:
    text = f"{x:.8f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def order_row(acc: Account, o: Order) -> dict[str, Any]:
    dec = acc.price_dec
    avg = o.value / o.filled if o.filled > EPS else 0.0
    return {
        **_ORDER_BLANKS,
        "orderId": o.order_id,
        "orderLinkId": o.link_id,
        "symbol": acc.symbol,
        "price": _num(o.price, dec) if o.order_type == "Limit" else "0",
        "qty": _num(o.qty, 3),
        "side": o.side,
        "orderStatus": o.status,
        "cancelType": o.cancel_type,
        "rejectReason": o.reject_reason,
        "avgPrice": _num(avg, dec) if avg else "",
        "leavesQty": _num(o.remaining if o.open else 0.0, 3),
        "leavesValue": _amount(o.remaining * o.price if o.open else 0.0),
        "cumExecQty": _num(o.filled, 3),
        "cumExecValue": _amount(o.value),
        "cumExecFee": _amount(o.fee),
        "timeInForce": o.tif,
        "orderType": o.order_type,
        "reduceOnly": o.reduce_only,
        "createdTime": str(o.created_ms),
        "updatedTime": str(o.updated_ms),
    }


def position_row(acc: Account, now_ms: int) -> dict[str, Any]:
    pos, dec, mark = acc.position, acc.price_dec, acc.mark()
    size = abs(pos.size)
    upl = pos.size * (mark - pos.avg) if size > EPS else 0.0
    return {
        **_POSITION_BLANKS,
        "symbol": acc.symbol,
        "side": "" if size <= EPS else ("Buy" if pos.size > 0 else "Sell"),
        "size": _num(size, 3),
        "avgPrice": _num(pos.avg, dec) if size > EPS else "0",
        "positionValue": _amount(size * pos.avg),
        "markPrice": _num(mark, dec) if math.isfinite(mark) else "",
        "positionIM": _amount(size * mark / 10 if size > EPS else 0.0),
        "unrealisedPnl": _amount(upl),
        "curRealisedPnl": _amount(pos.realised),
        "cumRealisedPnl": _amount(pos.realised),
        "createdTime": str(pos.updated_ms or now_ms),
        "updatedTime": str(pos.updated_ms or now_ms),
        "seq": acc.seq,  # the last execution in the position (Bybit's cross sequence)
    }


def wallet_row(acc: Account) -> dict[str, Any]:
    pos = acc.position
    upl = pos.size * (acc.mark() - pos.avg) if pos.size else 0.0
    equity, balance = _amount(acc.balance + upl), _amount(acc.balance)
    coin = {
        **_COIN_BLANKS,
        "coin": "USDT",
        "equity": equity,
        "usdValue": equity,
        "walletBalance": balance,
        "unrealisedPnl": _amount(upl),
        "cumRealisedPnl": _amount(pos.realised),
    }
    return {
        **_WALLET_BLANKS,
        "accountType": "UNIFIED",
        "totalEquity": equity,
        "totalWalletBalance": balance,
        "totalMarginBalance": equity,
        "totalAvailableBalance": equity,
        "totalPerpUPL": _amount(upl),
        "coin": [coin],
    }


def _blanks(empty: str, zero: str = "", **fixed: Any) -> dict[str, Any]:
    return {**dict.fromkeys(empty.split(), ""), **dict.fromkeys(zero.split(), "0"), **fixed}


_ORDER_BLANKS = _blanks(
    "blockTradeId isLeverage stopOrderType orderIv marketUnit triggerPrice takeProfit stopLoss tpslMode "
    "tpLimitPrice slLimitPrice tpTriggerBy slTriggerBy triggerBy lastPriceOnCreated placeType smpOrderId",
    positionIdx=0,
    createType="CreateByUser",
    triggerDirection=0,
    closeOnTrigger=False,
    smpType="None",
    smpGroup=0,
)
_POSITION_BLANKS = _blanks(
    "liqPrice bustPrice sessionAvgPrice",
    "positionMM positionBalance takeProfit stopLoss trailingStop",
    positionIdx=0,
    riskId=1,
    riskLimitValue="2000000",
    tradeMode=0,
    autoAddMargin=0,
    positionStatus="Normal",
    leverage="10",
    tpslMode="Full",
    adlRankIndicator=0,
    isReduceOnly=False,
)
_COIN_BLANKS = _blanks(
    "free availableToWithdraw",
    "locked borrowAmount accruedInterest totalOrderIM totalPositionIM totalPositionMM bonus spotHedgingQty",
    collateralSwitch=True,
    marginCollateral=True,
)
_EXEC_BLANKS = _blanks(
    "underlyingPrice indexPrice tradeIv blockTradeId markIv extraFees",
    stopOrderType="UNKNOWN",
    feeCurrency="USDT",
    execType="Trade",
    createType="CreateByUser",
)
_WALLET_BLANKS = _blanks("", "totalInitialMargin totalMaintenanceMargin accountIMRate accountMMRate accountLTV")


def execution_row(acc: Account, e: Execution) -> dict[str, Any]:
    o, dec = e.order, acc.price_dec
    return {
        **_EXEC_BLANKS,
        "symbol": acc.symbol,
        "orderType": o.order_type,
        "orderLinkId": o.link_id,
        "side": o.side,
        "orderId": o.order_id,
        "leavesQty": _num(e.leaves, 3),
        "execTime": str(e.time_ms),
        "isMaker": e.maker,
        "execFee": _amount(e.fee),
        "feeRate": _amount(e.fee_rate),
        "execId": e.exec_id,
        "markPrice": _num(e.mark, dec),
        "execPrice": _num(e.price, dec),
        "orderQty": _num(o.qty, 3),
        "orderPrice": _num(o.price, dec) if o.order_type == "Limit" else "0",
        "execValue": _amount(e.qty * e.price),
        "execQty": _num(e.qty, 3),
        "closedSize": _num(e.closed, 3),
        "seq": e.seq,
    }
