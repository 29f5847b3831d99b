"""The building blocks of every config section: a strict frozen base and typed durations."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from core.timefmt import parse_duration_ns, parse_time_ns

DurationNs = Annotated[int, BeforeValidator(parse_duration_ns), Field(ge=0)]
"""A duration in ns, written in YAML as '500ms', '1s', '5m' or a number of seconds."""

InstantNs = Annotated[int, BeforeValidator(parse_time_ns)]
"""An instant in ns since the epoch, written in YAML as ISO 8601."""


def iso_to_str(value: Any) -> Any:
    """YAML turns an unquoted timestamp into a datetime; accept it as the ISO text it was."""
    return value.isoformat() if hasattr(value, "isoformat") else value


class Section(BaseModel):
    """Base of every config section: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # keys that tune how a job runs (memory, speed) but never what it computes: left out of the digest
    not_results: ClassVar[frozenset[str]] = frozenset()

    def digest(self) -> str:
        """Stable short hash of the values that change results (identifies feature sets and models)."""
        values = self.model_dump(mode="json", exclude=set(self.not_results))
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
