"""The order API (FastAPI): place an order, follow it, cancel it. An edge: it calls services and conveyor.

Every request carries ``Authorization: Bearer <token>`` (see :mod:`examples.orders.access`); without a
known token the answer is ``401``. A customer sees and cancels only their own orders: another's is a
``404``, as if it did not exist; an admin token sees every order.

- ``POST /orders``: the body is checked strictly (:mod:`examples.orders.api_models`: a bad field is named,
  ``items.0.quantity``; nothing is coerced; text is printable). A ``card_number`` is exchanged for the
  gateway's token at once: the order keeps the token and the last four digits, never the number. The
  order is recorded and its workflow started through the shop's runtime (``shop.start``); the answer,
  ``202``, carries the order id and its status URL. The same ``Idempotency-Key`` header from the same
  customer returns the same order (and starts nothing new); the same key with another body is refused
  with ``422``.
- ``GET /orders/{id}``: the order, its status history, and its workflow's steps with their attempts,
  timings and errors (a cancelled order: its reason, and its run ``cancelled`` with the same).
- ``POST /orders/{id}/cancel``: cancels the order's run through the runtime (``shop.cancel``, conveyor's
  ``cancel_workflow``): the run stops, its completed steps are undone newest first (refund, release,
  settle), and it ends ``cancelled`` with the reason; a completed order's run is undone the same way
  (``shop.compensate``). ``202`` with the run's state; ``409`` once the order has shipped (until
  delivered) or failed; ``200`` if it is cancelled already.
- ``GET /products``: the catalogue.

The workflows run in ``conveyor worker`` processes, not here. The API reads and starts runs through the
:class:`~conveyor.Conveyor` it is given (:func:`examples.orders.workflows.shop_runtime`), and reaches the
application's database through that runtime's ``"system"`` resource.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from conveyor import Conveyor, RunFinishedError, RunNotFoundError, StepStatus, WorkflowStatus
from conveyor.web import create_server
from conveyor.web.tokens import ApiTokens
from examples.orders import domain, services
from examples.orders.access import ApiAccess, Caller
from examples.orders.adapters.orders import UnknownOrderError
from examples.orders.api_models import ORDER_ID, OrderAccepted, OrderIn, Text
from examples.orders.fulfilment import order_fulfilment
from examples.orders.sagas import PartialOrderProcessing
from examples.orders.system import SYSTEM_RESOURCE, OrderSystem

OrderId = Annotated[str, Path(pattern=ORDER_ID)]

CONVEYOR_PREFIX = "/conveyor"
"""Where the order API mounts conveyor's own server (its REST API and dashboard), when asked to."""


def _caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """Who sent the request, by its bearer token; 401 if nobody the API knows."""
    access: ApiAccess = request.app.state.access
    found = access.caller(authorization)
    if found is None:
        raise HTTPException(
            status_code=401,
            detail="send Authorization: Bearer <token> with a token this shop issued",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


Authenticated = Annotated[Caller, Depends(_caller)]
"""A route's caller: every route takes one, so no route answers without a known token."""


def _not_found(order_id: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": f"no order {order_id!r}"})


def _field_error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"detail": f"{field}: {message}", "errors": [{"field": field, "message": message}]},
    )


def _step(step: StepStatus) -> dict[str, Any]:
    error = step.error or step.compensation_error
    return {
        "name": step.name,
        "state": step.state.value,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration_seconds": step.duration_seconds,
        "compensation_attempts": step.compensation_attempts,
        "error": None if error is None else {"type": error.error_type, "message": error.message},
    }


def _run(status: WorkflowStatus) -> dict[str, Any]:
    error = status.error()
    return {
        "workflow_id": status.workflow_id,
        "workflow": status.workflow_name,
        "state": status.state.value,
        "recoveries": status.recoveries,
        "created_at": status.created_at,
        "updated_at": status.updated_at,
        "error": None if error is None else {"step": error.step_name, "message": error.message},
        "steps": [_step(step) for step in status.steps],
    }


def create_app(shop: Conveyor, access: ApiAccess, *, operations: ApiTokens | None = None) -> FastAPI:
    """The API over the shop's runtime, for the callers ``access`` knows.

    It starts and reads runs through ``shop`` and uses its ``"system"``. With no token in ``access``,
    there is no API: :class:`~examples.orders.access.AccessConfigurationError` (a ``ValueError``). With
    ``operations``, conveyor's own server (its REST API and dashboard) is mounted at ``/conveyor`` for
    those tokens (``serve`` gives it the admin token): the same scheme, the shop's runs.
    """
    access.require_tokens()
    system: OrderSystem = shop.resources[SYSTEM_RESOURCE]
    # No unauthenticated door: the interactive docs and the schema are off too.
    app = FastAPI(title="conveyor orders", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.access = access
    if operations is not None:
        app.mount(CONVEYOR_PREFIX, create_server(shop, operations))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():  # the message only: pydantic's "input" would repeat what was sent
            location = [str(part) for part in error.get("loc", ())]
            if location and location[0] in ("body", "header", "path", "query"):
                location = location[1:]
            errors.append({"field": ".".join(location) or "body", "message": error.get("msg", "invalid")})
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        return JSONResponse(status_code=422, content={"detail": detail, "errors": errors})

    def status_of(workflow_id: str | None) -> dict[str, Any] | None:
        if workflow_id is None:
            return None
        try:
            return _run(shop.status(workflow_id))
        except RunNotFoundError:
            return None

    def order_for(who: Caller, order_id: str) -> domain.Order | None:
        """The order, if it exists and ``who`` may see it (None looks the same either way)."""
        try:
            order = services.get_order(system, order_id)
        except UnknownOrderError:
            return None
        return order if who.may_see(order.customer_id) else None

    @app.post("/orders", status_code=202, response_model=OrderAccepted)
    def place_order(
        body: OrderIn,
        response: Response,
        who: Authenticated,
        idempotency_key: Annotated[Text | None, Header(min_length=1, max_length=200)] = None,
    ) -> Any:
        """Record an order and start its workflow; 202 with its status URL."""
        if who.customer_id is None:
            return JSONResponse(
                status_code=403, content={"detail": "orders are placed with a customer's token"}
            )
        prices = services.catalogue_prices(system)
        for index, item in enumerate(body.items):
            if item.sku not in prices:
                return _field_error(422, f"items.{index}.sku", f"unknown SKU {item.sku!r}")
        if body.card_number is not None:  # tokenised at the door: the number goes no further
            card = system.gateway.tokenize_card(body.card_number.get_secret_value())
            token, last4, brand = card.token, card.last4, card.brand
        else:
            assert body.card_token is not None  # OrderIn asks for exactly one
            token, last4, brand = body.card_token, None, None
        request = services.OrderRequest(
            customer_email=body.customer_email,
            card_token=token,
            shipping_address=body.shipping_address,
            items=tuple((item.sku, item.quantity) for item in body.items),
            allow_partial=body.allow_partial,
            customer_id=who.customer_id,
            card_last4=last4,
            card_brand=brand,
        )
        try:
            placed = services.place_order(system, request, idempotency_key)
        except services.IdempotencyConflictError as exc:
            return _field_error(422, "Idempotency-Key", str(exc))
        except domain.InvalidOrderError as exc:
            return _field_error(422, "body", str(exc))
        workflow = PartialOrderProcessing.workflow if body.allow_partial else order_fulfilment
        # Starting is idempotent: a replayed request also heals a crash between recording and starting.
        shop.start(workflow, {"order_id": placed.order_id}, workflow_id=placed.workflow_id)
        url = f"/orders/{placed.order_id}"
        response.headers["Location"] = url
        if not placed.created:
            response.headers["Idempotent-Replayed"] = "true"
        order = services.get_order(system, placed.order_id)
        return OrderAccepted(
            order_id=placed.order_id,
            workflow_id=placed.workflow_id,
            status=order.status.value,
            status_url=url,
        )

    @app.get("/orders/{order_id}")
    def get_order(order_id: OrderId, who: Authenticated) -> Any:
        """The order, its history, and its workflow's steps with their timings and errors."""
        order = order_for(who, order_id)
        if order is None:
            return _not_found(order_id)
        history, created_at = services.status_history(system, order_id)
        return {
            "order_id": order.id,
            "customer_id": order.customer_id,
            "status": order.status.value,
            "cancel_reason": order.cancel_reason,
            "customer_email": order.customer_email,
            "card_brand": order.card_brand,
            "card_last4": order.card_last4,
            "currency": order.currency,
            "total_cents": order.total_cents,
            "lines": [
                {"sku": line.sku, "quantity": line.quantity, "unit_price_cents": line.unit_price_cents}
                | {"dropped": line.dropped}
                for line in order.lines
            ],
            "payment_id": order.payment_id,
            "reservation_id": order.reservation_id,
            "shipment_id": order.shipment_id,
            "failure_reason": order.failure_reason,
            "created_at": created_at,
            "history": [{"from": before, "to": after, "at": at} for before, after, at in history],
            "workflow": status_of(order.workflow_id),
        }

    @app.post("/orders/{order_id}/cancel", status_code=202)
    def cancel_order(order_id: OrderId, response: Response, who: Authenticated) -> Any:
        """Cancel the order's run (undo a completed one's): its steps are undone, newest first."""
        order = order_for(who, order_id)
        if order is None:
            return _not_found(order_id)
        if order.status is domain.OrderStatus.CANCELLED:
            return JSONResponse(status_code=200, content={"order_id": order_id, "status": "cancelled"})
        refused = JSONResponse(
            status_code=409,
            content={"detail": f"order {order_id} is {order.status.value}; it cannot be cancelled now"},
        )
        if order.status not in (*domain.CANCELLABLE_IN_FLIGHT, domain.OrderStatus.COMPLETED):
            return refused
        assert order.workflow_id is not None  # every order the API placed has its run
        reason = services.CUSTOMER_CANCELLED
        if order.status is domain.OrderStatus.CREATED:  # nothing of it may have completed: nothing to undo
            services.cancel_unstarted_order(system, order_id, reason)
        try:
            if order.status is domain.OrderStatus.COMPLETED:
                run = shop.compensate(order.workflow_id, reason)
            else:
                run = shop.cancel(order.workflow_id, reason)
        except RunFinishedError:  # the run ended meanwhile: undo it if it completed, else it is too late
            try:
                run = shop.compensate(order.workflow_id, reason)
            except RunFinishedError:
                return refused
        response.headers["Location"] = f"/orders/{order_id}"
        return {
            "order_id": order_id,
            "workflow_id": run.workflow_id,
            "state": run.state.value,
            "status_url": f"/orders/{order_id}",
        }

    @app.get("/products")
    def list_products(who: Authenticated) -> Any:
        """The catalogue: price and units available per SKU."""
        return [
            {"sku": sku, "price_cents": price, "available": available}
            for sku, price, available in services.catalogue(system)
        ]

    return app
