"""The ``rest:`` block of a system of kind ``rest`` in ``systems.yaml``, validated by pydantic.

Only how to talk to the API lives here (endpoints, paging, limits, the auth *style*);
the base URL and the secret come from the Airflow connection, never from the YAML.
A mapping's ``table`` names one of the endpoints declared here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from truesync.support.names import check_member

PaginationStyle = Literal["page", "offset", "cursor", "link", "after_id"]
TimeFormat = Literal["iso", "epoch_s", "epoch_ms"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthConfig(_Strict):
    """How the connection's secret is sent. ``bearer`` and ``api_key`` use its password."""

    type: Literal["none", "bearer", "basic", "api_key"] = "bearer"
    header: str = Field("X-API-Key", description="header carrying the key for type api_key")


class PaginationConfig(_Strict):
    style: PaginationStyle = "page"
    page_size: int = Field(100, ge=1, le=10_000)
    size_param: str = "limit"
    page_param: str = Field("page", description="style page: 1-based page number")
    offset_param: str = Field("offset", description="style offset: items to skip")
    cursor_param: str = Field("cursor", description="style cursor: the token of the next page")
    next_field: str = Field("next_cursor", description="style cursor: body field holding the next token")
    after_param: str = Field("starting_after", description="style after_id: the id of the last item read")
    more_field: str = Field("has_more", description="style after_id: body field, true while more items follow")


class LookupConfig(_Strict):
    """How records are found by their external key.

    ``param``: ``GET path?<param>=k1&<param>=k2``, ``max_keys`` keys a request. ``path``: one
    ``GET`` a key, ``{key}`` replaced by it (``/v1/charges/{key}``); a 404 means no such record.
    """

    param: str | None = None
    path: str | None = Field(None, pattern=r"^/", description="retrieve one record: a path holding '{key}'")
    params: dict[str, str | list[str]] = Field(default_factory=dict, description="extra query parameters on lookups")
    max_keys: int = Field(50, ge=1, le=1000, description="keys per lookup request")
    by: dict[str, str] = Field(default_factory=dict, description="other member -> query parameter finding by it")

    @model_validator(mode="after")
    def _one_way(self) -> LookupConfig:
        if (self.param is None) == (self.path is None):
            raise ValueError("a lookup needs exactly one of param and path")
        if self.path is not None and "{key}" not in self.path:
            raise ValueError("lookup path must contain '{key}'")
        return self


class UpsertConfig(_Strict):
    """A native create-or-update call: ``<method> path`` with ``{key}`` replaced by the record's key."""

    method: Literal["PUT", "POST"] = "PUT"
    path: str

    @field_validator("path")
    @classmethod
    def _has_key(cls, value: str) -> str:
        if "{key}" not in value:
            raise ValueError("upsert path must contain '{key}'")
        return value


class EndpointConfig(_Strict):
    """One collection resource: how to list it by change time, find records by key, and write them."""

    path: str = Field(pattern=r"^/")
    pagination: PaginationConfig = Field(default_factory=PaginationConfig)
    items_field: str = Field("items", description="body field holding the list; '' when the body is the list")
    record_path: str | None = Field(
        None, description="envelopes: member path of the record inside each item (events: data.object)"
    )
    records_endpoint: str | None = Field(
        None, description="envelopes: the endpoint listing the records themselves, which a full compare reads"
    )
    order: Literal["asc", "desc"] = Field("asc", description="the listing's order by change time")
    time_format: TimeFormat = Field("iso", description="change times and window bounds: ISO 8601 or epoch numbers")
    since_param: str | None = Field("updated_since", description="window start, inclusive (created[gte])")
    since_exclusive: bool = Field(False, description="since_param reads 'after' (created[gt]): sent one unit early")
    until_param: str | None = Field("updated_before", description="window end, exclusive (created[lt])")
    key_after_param: str | None = Field(
        None, description="items whose key sorts after this value, ties on change time ordered by key"
    )
    total_field: str | None = Field(None, description="body field holding the listing's total item count")
    params: dict[str, str | list[str]] = Field(
        default_factory=dict, description="extra query parameters on every listing; a list repeats the parameter"
    )
    incomplete_params: dict[str, str] | None = Field(
        None, description="query parameters listing records lacking key or change time (read on every run)"
    )
    lookup: LookupConfig | None = None
    id_field: str = Field("id", description="the API's own record id, used in update URLs")
    update_method: Literal["PATCH", "PUT"] = "PATCH"
    upsert: UpsertConfig | None = None
    read_only: list[str] = Field(default_factory=list, description="fields the API sets itself; never sent")

    @field_validator("record_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return value if value is None else check_member(value)

    @model_validator(mode="after")
    def _records_by_path(self) -> EndpointConfig:
        """A lookup by query parameter lists envelopes on an endpoint of envelopes: records come by ``path``."""
        if self.record_path is not None and self.lookup is not None and (self.lookup.param or self.lookup.by):
            raise ValueError("an endpoint of envelopes (record_path) finds records by key with lookup.path only")
        return self

    @field_validator("order", "since_param", "until_param")
    @classmethod
    def _readable_window(cls, value: Any, info: ValidationInfo) -> Any:
        """Keyset styles page by change time: they need both window bounds and an ascending listing.

        A listing paged by the last item's id (``after_id``) reads a window in either order
        and with either bound missing: the window is cut here, and the read stops at the
        first item past it.
        """
        paging = info.data.get("pagination")
        if paging is None or paging.style == "after_id":
            return value
        if value is None:
            raise ValueError(
                f"{info.field_name} is required unless pagination is after_id: "
                "truesync reads items sharing one change time with it"
            )
        if value == "desc":
            raise ValueError("order desc needs pagination style after_id: other styles page by change time")
        return value


class RestConfig(_Strict):
    auth: AuthConfig = Field(default_factory=AuthConfig)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    retries: int = Field(5, ge=0, le=20)
    backoff_factor: float = Field(0.5, ge=0)
    backoff_jitter: float = Field(0.25, ge=0)
    backoff_max: float = Field(60.0, gt=0)
    rate_limit: float | None = Field(None, gt=0, description="requests per second ceiling for this system")
    headers: dict[str, str] = Field(default_factory=dict, description="extra non-secret headers")
    endpoints: dict[str, EndpointConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _records_endpoints(self) -> RestConfig:
        """An envelope endpoint's ``records_endpoint`` is another endpoint, listing records, not envelopes."""
        for name, endpoint in self.endpoints.items():
            other = self.endpoints.get(endpoint.records_endpoint or "")
            if endpoint.records_endpoint is not None and (other is None or other.record_path is not None):
                raise ValueError(
                    f"endpoints.{name}.records_endpoint: '{endpoint.records_endpoint}' is not an endpoint "
                    "listing records (one without record_path)"
                )
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, value: Any) -> Any:
        headers = value.get("headers", {}) if isinstance(value, dict) else {}
        auth = value.get("auth") if isinstance(value, dict) else None
        key_header = (auth.get("header") if isinstance(auth, dict) else None) or AuthConfig().header
        credential = {"authorization", "cookie", "proxy-authorization", str(key_header).lower()}
        secret = [h for h in headers if h.lower() in credential]
        if secret:
            raise ValueError(f"header '{secret[0]}' carries credentials: put them in the Airflow connection")
        return value
