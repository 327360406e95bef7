"""Request bodies of the service (pydantic): types, limits, and nothing unknown accepted."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from llmrec.serve.feedback import EVENTS

# limits: a request is a user's recent history, not their life
MAX_HISTORY = 500
MAX_CANDIDATES = 100
MAX_ITEMS_ADDED = 1000
MAX_REF_CHARS = 500  # an item id or title
MAX_K = 100
MAX_CONTEXT_BYTES = 4096  # a feedback event's context: page, position, device; not a document
LATEST_TIMESTAMP = 253402300799  # 9999-12-31 in unix seconds: prepare refuses what lies beyond

ItemRef = Annotated[StrictStr, Field(min_length=1, max_length=MAX_REF_CHARS)] | StrictInt
UnknownItems = Literal["keep", "drop", "error"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(Body):
    user: Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt | None = Field(
        None, description="a user of the served data: their whole history is used")
    history: list[ItemRef] | None = Field(None, max_length=MAX_HISTORY, description="item ids or titles, oldest first")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude: list[ItemRef] = Field(default_factory=list, max_length=MAX_HISTORY,
                                   description="items never to recommend (the history's are excluded already)")
    explain: bool = False
    mode: Literal["auto", "llm", "cf", "generate", "rerank"] = "auto"
    guide_weight: float | None = Field(None, ge=0, allow_inf_nan=False)
    unknown_items: UnknownItems = "keep"

    @model_validator(mode="after")
    def _one_source(self) -> RecommendRequest:
        if (self.user is None) == (self.history is None):
            raise ValueError("give exactly one of 'user' and 'history'")
        return self


class PredictRequest(Body):
    history: list[ItemRef] = Field(default_factory=list, max_length=MAX_HISTORY, description="liked items, oldest first")
    disliked: list[ItemRef] = Field(default_factory=list, max_length=MAX_HISTORY)
    target: ItemRef
    unknown_items: UnknownItems = "keep"


class RankRequest(Body):
    history: list[ItemRef] = Field(default_factory=list, max_length=MAX_HISTORY)
    candidates: list[ItemRef] = Field(min_length=1, max_length=MAX_CANDIDATES)
    unknown_items: UnknownItems = "keep"


class ExplainRequest(Body):
    history: list[ItemRef] = Field(default_factory=list, max_length=MAX_HISTORY)
    item: ItemRef
    unknown_items: UnknownItems = "keep"


class FeedbackRequest(Body):
    user: Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt
    item: ItemRef
    event: Literal[EVENTS]  # type: ignore[valid-type]
    timestamp: float | None = Field(None, ge=0, le=LATEST_TIMESTAMP, allow_inf_nan=False,
                                    description="unix seconds (default: now)")
    context: dict[str, Any] | None = Field(None, description=f"free JSON, at most {MAX_CONTEXT_BYTES} bytes")

    @field_validator("context")
    @classmethod
    def _loggable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """The context is written as JSON: it must be finite numbers and UTF-8 text, and small."""
        if value is None:
            return value
        try:
            size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
        except (ValueError, UnicodeEncodeError):
            raise ValueError("must be JSON with finite numbers and valid UTF-8 text") from None
        if size > MAX_CONTEXT_BYTES:
            raise ValueError(f"{size} bytes as JSON, over the limit of {MAX_CONTEXT_BYTES}")
        return value


class NewItem(Body):
    item_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt
    title: Annotated[StrictStr, Field(min_length=1, max_length=MAX_REF_CHARS)]


class ItemsRequest(Body):
    items: list[NewItem] = Field(min_length=1, max_length=MAX_ITEMS_ADDED)
