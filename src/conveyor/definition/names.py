"""What a name may hold: the names of steps, workflows, branches and namespaces, and versions.

Names are stored with every run (as text columns and as keys of JSON objects), shown in statuses and logs,
and built into idempotency keys. Any text is a name except an empty one, or one holding a control
character (U+0000 to U+001F, U+007F to U+009F: PostgreSQL refuses NUL in text and in ``jsonb``, and the
others garble logs and terminals) or a lone surrogate (not UTF-8, so no backend can store it). They are
refused when the workflow is built, not when its first run fails to checkpoint.
"""

from __future__ import annotations

import re

from conveyor.errors import DefinitionError

_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is a usable name, else raise :class:`DefinitionError` naming ``what``.

    The error quotes the name and the character at fault: ``a step name may not hold the character
    '\\x00': 'charge\\x00card'``.
    """
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(f"{what} must be a non-empty string, not {value!r}")
    refused = _REFUSED.search(value)
    if refused is not None:
        raise DefinitionError(
            f"{what} may not hold the character {refused.group()!r}: {value!r} "
            "(names may not hold control characters or lone surrogates)"
        )
    return value
