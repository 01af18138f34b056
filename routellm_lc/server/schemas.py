"""Request and response models: the server's OpenAPI contract.

The chat request model validates every request (pydantic-core, on the dict `orjson` parsed),
but the request is forwarded as the client sent it, with only `model` replaced: parameters
this schema does not name (`extra="allow"`) and full tool schemas pass through untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Open(BaseModel):
    """Accepts fields beyond those declared (OpenAI adds parameters often). Strict types:
    what is validated is what is forwarded, so no coercion ("0.5" stays a wrong type)."""

    model_config = ConfigDict(extra="allow", strict=True)


class FunctionDefinition(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """A JSON schema, nested as deep as the client likes; forwarded untouched."""
    strict: bool | None = None


class CustomToolDefinition(_Open):
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None
    """Free text, or a grammar the model's input must follow; forwarded untouched."""


class Tool(_Open):
    """A function tool (`function`: a JSON schema for its arguments), or OpenAI's custom tool
    (`type: "custom"`, `custom`: the model calls it with free text)."""

    type: Literal["function", "custom"] = "function"
    function: FunctionDefinition | None = None
    custom: CustomToolDefinition | None = None

    @model_validator(mode="after")
    def _has_its_definition(self) -> Tool:
        if getattr(self, self.type) is None:
            raise ValueError(f"a {self.type} tool needs '{self.type}'")
        return self


class FunctionCall(_Open):
    name: str | None = None
    arguments: str | None = None


class CustomCall(_Open):
    name: str | None = None
    input: str | None = None


class ToolCall(_Open):
    """A tool call in the conversation: a function call (`function`) or a custom tool's call
    (`type: "custom"`, `custom`)."""

    id: str | None = None
    type: str | None = "function"
    function: FunctionCall | None = None
    custom: CustomCall | None = None

    @model_validator(mode="after")
    def _has_its_call(self) -> ToolCall:
        if self.type == "custom":
            if self.custom is None:
                raise ValueError("a custom tool call needs 'custom'")
        elif self.function is None:  # "function", or a type OpenAI may add later
            raise ValueError("a function tool call needs 'function'")
        return self


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    """A string or a list of content parts (`{"type": "text", "text": ...}`, images, ...)."""
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(_Open):
    """OpenAI's chat-completions request; `model` is `router-<router>-<threshold>`."""

    model: str = Field(examples=["router-mf-0.5"])
    """`router-<router>-<threshold>` (RouteLLM's format), or `router-<router>` for the
    server's default threshold."""
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None


class ResponseMessage(_Open):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(_Open):
    index: int
    message: ResponseMessage
    finish_reason: str | None = None


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(_Open):
    """The answering model's response as it sent it; `model` names that model."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape: every error this server returns has it."""

    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "routellm-lc"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    routers: list[str]
    strong: str
    weak: str
