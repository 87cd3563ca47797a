"""Workflow classes: a subclass of :class:`WorkflowClass` is a workflow, each ``@step`` method a step.

::

    class OrderProcessing(Saga):
        input_schema = OrderInput
        retry_defaults = RetryPolicy(max_attempts=3, backoff="exponential", initial_delay_secs=2)

        @step
        def validate_order(self, order_id: str) -> dict[str, Order]: ...

        @step(order=from_result("validate_order", "order"))
        def reserve_inventory(self, order: Order) -> dict[str, str]: ...

        @reserve_inventory.undo
        def release_reservation(self, reservation_id: str, **_: Any) -> None: ...

A step's parameters are bound by name (``from_result``, ``from_input``); a parameter left unbound takes the
same-named field of the workflow input. The steps run in the order they are declared, each after every
step declared before it; a ``@step(parallel=True)`` step waits only for the steps it reads and those its
``after=`` names, so it may run alongside the steps declared just before it. An undo names what it needs:
any argument of its step, any field of the step's result, or ``result`` (the whole result). A subclass
inherits every step, in its base's order; overriding a step's method changes what the step does and keeps
its place, arguments, options and undo, while ``@step`` in the subclass declares the step afresh (keeping
its place, and its undo unless it declares another). Each class is compiled once, when it is defined, into
:attr:`WorkflowClass.workflow`; it is registered nowhere until a runtime registers it
(``Conveyor(workflows=[OrderProcessing])`` or ``@app.register``).

conveyor creates a fresh instance (with no arguments) for every step and undo call: keep what a run needs in
step results, not on ``self``.

This module declares; it runs nothing. :class:`conveyor.Saga`, the class users subclass, adds ``run`` and
``retry`` on top of it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from conveyor.definition.class_compiler import compile_class
from conveyor.definition.registry import DEFAULT_NAMESPACE
from conveyor.definition.retry import RetryPolicy
from conveyor.definition.workflow import Workflow
from conveyor.errors import DefinitionError


class WorkflowClass:
    """The declaring half of a workflow class: each subclass is compiled into :attr:`workflow` when defined.

    Class attributes: ``workflow_name`` (default: the class name), ``namespace``, ``version``,
    ``input_schema`` (a pydantic model the input must fit, checked before anything runs), ``retry_defaults``
    and ``compensation_retry_defaults``. Class keyword: ``abstract=True`` for a base class that is not a
    workflow itself.
    """

    workflow: ClassVar[Workflow]
    """The compiled workflow (set when the class is defined)."""
    workflow_name: ClassVar[str | None] = None
    namespace: ClassVar[str] = DEFAULT_NAMESPACE
    version: ClassVar[str] = "1"
    input_schema: ClassVar[Any] = None
    retry_defaults: ClassVar[RetryPolicy | None] = None
    compensation_retry_defaults: ClassVar[RetryPolicy | None] = None

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        cls.workflow = compile_class(cls)

    @classmethod
    def _compiled(cls) -> Workflow:
        """This class's own workflow; a :class:`DefinitionError` for an abstract class."""
        workflow = cls.__dict__.get("workflow")
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"{cls.__name__} is not a workflow (it is abstract, or Saga itself)")
        return workflow
