"""Sharded serving on Ray Serve: one deployment per shard, and a router that speaks the REST API
of ``ibex serve``.

>>> from ibex.ray import serve as ibex_serve
>>> ibex_serve.run("./cranfield-4", name="cranfield", replicas=2, port=8000)

REST clients do not change: ``POST /v1/indexes/{name}/search`` takes the same body and answers
the same JSON as ``ibex serve`` (plus the router's own request fields ``stats`` (``"global"``,
the default, or ``"local"``) and ``allow_partial``, and ``missing_shards`` in the answer when
partial answers were allowed). ``POST /v1/indexes/{name}/documents`` (a JSON array or NDJSON),
``POST /v1/indexes/{name}/documents/delete`` (``{"ids": [...]}``), ``DELETE
/v1/indexes/{name}/documents/{id}`` and ``GET /v1/indexes/{name}/documents/{id}`` route each
document to its shard. API keys (``IBEX_API_KEYS``: ``KEY``, ``KEY:read``, ``KEY:write``) and the
request limits are those of ``ibex serve``.

A shard call that fails because its replica died is retried on another replica of that shard
(Ray Serve stops routing to a dead replica but fails the calls already on it). A shard with no
live replica within the read timeout makes the search answer 503 naming it, unless the request
says ``"allow_partial": true``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .. import Embedder, Index, _native
from ..errors import IbexError, IndexNotFoundError, InvalidInputError
logger = logging.getLogger("ibex.ray.serve")

from ._sharded import ScatterGather, ShardClient, ShardUnavailableError, read_manifest, shard_method


@dataclass(frozen=True)
class Limits:
    """The request limits of ``ibex serve`` (web/src/lib.rs ``Limits``), enforced by the router."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_batch_documents: int = 1_000
    max_query_chars: int = 2_000
    max_top_k: int = 1_000
    max_passages: int = 20
    #: Longest a shard call may take, waiting for a live replica included.
    read_timeout_s: float = 30.0
    write_timeout_s: float = 600.0


MIN_KEY_LEN = 16


def parse_api_keys(spec: str) -> list[tuple[bytes, set[str]]]:
    """``IBEX_API_KEYS``: comma-separated ``KEY``, ``KEY:read``, ``KEY:write`` or
    ``KEY:read+write``; keeps only each key's SHA-256, as ``ibex serve`` does."""
    keys = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, scopes = item.rpartition(":") if ":" in item else (item, "", "read+write")
        parsed = set()
        for scope in scopes.split("+"):
            if scope.strip() not in ("read", "write"):
                raise InvalidInputError(
                    f"unknown scope {scope!r} in an API key: use KEY, KEY:read, KEY:write or KEY:read+write"
                )
            parsed.add(scope.strip())
        if len(key) < MIN_KEY_LEN or any(c.isspace() for c in key):
            raise InvalidInputError(
                f"API keys must be at least {MIN_KEY_LEN} characters without spaces"
            )
        keys.append((hashlib.sha256(key.encode()).digest(), parsed))
    return keys


def _scopes_of(keys: list[tuple[bytes, set[str]]], presented: str) -> Optional[set[str]]:
    """The scopes of ``presented``: every key compared in constant time."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = None
    for key_digest, scopes in keys:
        if hmac.compare_digest(key_digest, digest):
            found = scopes
    return found


class ApiError(Exception):
    """An answer other than 200, as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error_of(e: Exception) -> ApiError:
    if isinstance(e, ApiError):
        return e
    if isinstance(e, ShardUnavailableError):
        return ApiError(503, "shard_unavailable", str(e))
    if isinstance(e, IndexNotFoundError):
        return ApiError(404, "index_not_found", str(e))
    if isinstance(e, (InvalidInputError, ValueError)):
        return ApiError(422, "invalid_field", str(e))
    if isinstance(e, IbexError):
        return ApiError(500, "internal", str(e))
    return ApiError(500, "internal", f"{type(e).__name__}: {e}")


class ServeShard(ShardClient):
    """A shard reached through its Serve deployment; a call that fails because its replica died
    is retried (Serve routes the retry to a live replica) until the timeout."""

    #: Errors that mean "this replica is gone", not "this request is wrong".
    RETRIED = ("ActorDiedError", "ActorUnavailableError", "RayActorError", "DeploymentUnavailableError")

    def __init__(self, name: str, handle: Any, timeout_s: float) -> None:
        self.name = name
        self.handle = handle
        self.timeout_s = timeout_s

    def call(self, method: str, *args: Any) -> Any:
        deadline = time.monotonic() + self.timeout_s
        delay = 0.05
        last = "no replica answered"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ShardUnavailableError([self.name], last)
            try:
                return self.handle.call.remote(method, *args).result(timeout_s=remaining)
            except Exception as e:  # noqa: BLE001 - classified below
                names = {t.__name__ for t in type(e).__mro__}
                if not names.intersection(self.RETRIED) and "Timeout" not in type(e).__name__:
                    raise
                last = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                logger.warning("shard %s: %s failed (%s); retrying on another replica", self.name, method, last)
            # Backs off between retries while Serve replaces the replica.
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)


class ShardDeployment:
    """One replica of a shard: the shard's index opened read-write."""

    def __init__(self, path: str, device: str = "auto") -> None:
        self.index = Index.open(path, device=device)

    def call(self, method: str, *args: Any) -> Any:
        return shard_method(self.index, method, *args)


class RestApi:
    """The REST API of ``ibex serve`` over a :class:`ScatterGather`: routes, API keys, limits and
    JSON errors. Plain Python (the router deployment calls it; tests call it without Ray)."""

    def __init__(
        self,
        name: str,
        router: ScatterGather,
        api_keys: str = "",
        limits: Optional[Limits] = None,
    ) -> None:
        self.name = name
        self.router = router
        self.limits = limits or Limits()
        self.keys = parse_api_keys(api_keys)

    def respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """The status and JSON answer of one request (header names in lower case)."""
        started = time.monotonic()
        try:
            answer = self._handle(method, path, headers, body)
        except Exception as e:  # noqa: BLE001 - every error becomes a JSON answer
            error = _error_of(e)
            return error.status, {"error": {"code": error.code, "message": error.message}}
        if isinstance(answer, dict) and "took_ms" in answer:
            answer["took_ms"] = (time.monotonic() - started) * 1000.0
        return 200, answer

    def _authorize(self, headers: dict[str, str], scope: str) -> None:
        if not self.keys:
            return
        value = headers.get("authorization", "")
        presented = value[7:].strip() if value.lower().startswith("bearer ") else None
        if presented is None:
            raise ApiError(
                401,
                "missing_api_key",
                "this server needs an API key: send it as `Authorization: Bearer <key>`",
            )
        scopes = _scopes_of(self.keys, presented)
        if scopes is None:
            raise ApiError(401, "invalid_api_key", "the API key is not one of this server's keys")
        if scope not in scopes:
            raise ApiError(
                403, "insufficient_scope", f"this API key lacks the {scope} scope this request needs"
            )

    def _json(self, body: bytes) -> Any:
        if len(body) > self.limits.max_body_bytes:
            raise ApiError(
                413, "body_too_large", f"the body has {len(body)} bytes; this server takes at most {self.limits.max_body_bytes}"
            )
        try:
            return json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, "malformed_body", f"the body is not valid JSON: {e}") from None

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if path in ("/healthz", "/readyz"):
            return {"status": "ok"}
        parts = [p for p in path.split("/") if p]
        if len(parts) < 3 or parts[:2] != ["v1", "indexes"]:
            raise ApiError(404, "not_found", f"no route for {method} {path}")
        if parts[2] != self.name:
            raise ApiError(404, "index_not_found", f"no index named {parts[2]!r}")
        rest = parts[3:]
        if rest == ["search"] and method == "POST":
            self._authorize(headers, "read")
            return self._search(self._json(body))
        if rest == ["documents"] and method == "POST":
            self._authorize(headers, "write")
            return self._upsert(body, headers.get("content-type", ""))
        if rest == ["documents", "delete"] and method == "POST":
            self._authorize(headers, "write")
            request = self._json(body)
            ids = request.get("ids") if isinstance(request, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
                raise ApiError(422, "invalid_field", "send {\"ids\": [\"id\", ...]}")
            self._check_batch(len(ids), "ids")
            return self._timed(lambda: self.router.delete([str(i) for i in ids]))
        if len(rest) == 2 and rest[0] == "documents" and method in ("GET", "DELETE"):
            id = rest[1]
            if method == "GET":
                self._authorize(headers, "read")
                doc = self.router.get(id)
                if doc is None:
                    raise ApiError(404, "document_not_found", f"index {self.name!r} has no document {id!r}")
                return doc
            self._authorize(headers, "write")
            report = self._timed(lambda: self.router.delete([id]))
            if report["deleted"] == 0:
                raise ApiError(404, "document_not_found", f"index {self.name!r} has no document {id!r}")
            return report
        raise ApiError(404, "not_found", f"no route for {method} {path}")

    def _check_batch(self, n: int, what: str) -> None:
        if n > self.limits.max_batch_documents:
            raise ApiError(
                413,
                "batch_too_large",
                f"{n} {what} in one batch; this server takes at most {self.limits.max_batch_documents}: split the batch",
            )

    def _timed(self, write: Any) -> dict[str, Any]:
        started = time.monotonic()
        report = write()
        report["took_ms"] = (time.monotonic() - started) * 1000.0
        return report

    def _upsert(self, body: bytes, content_type: str) -> dict[str, Any]:
        kind = content_type.split(";")[0].strip().lower()
        if kind in ("application/x-ndjson", "application/jsonl"):
            if len(body) > self.limits.max_body_bytes:
                raise ApiError(413, "body_too_large", "the body is too large")
            docs = []
            for n, line in enumerate(body.decode("utf-8", "replace").splitlines()):
                if line.strip():
                    try:
                        docs.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ApiError(400, "malformed_body", f"line {n + 1}: not valid JSON: {e}") from None
        else:
            docs = self._json(body)
            if isinstance(docs, dict) and isinstance(docs.get("documents"), list):
                docs = docs["documents"]
            if not isinstance(docs, list):
                raise ApiError(422, "invalid_field", "send a JSON array of documents (or NDJSON)")
        self._check_batch(len(docs), "documents")
        if not all(isinstance(d, dict) for d in docs):
            raise ApiError(422, "invalid_document", "every document must be a JSON object")
        return self._timed(lambda: self.router.upsert(docs))

    def _search(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_field", "the search body must be a JSON object")
        known = {"query", "mode", "top_k", "passages", "filter", "alpha", "vector", "stats", "allow_partial"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ApiError(422, "invalid_field", f"unknown field {unknown[0]!r}")
        query = body.get("query") or ""
        if not isinstance(query, str):
            raise ApiError(422, "invalid_field", "query must be a string")
        if len(query) > self.limits.max_query_chars:
            raise ApiError(
                422,
                "query_too_long",
                f"the query has {len(query)} characters; this server takes at most {self.limits.max_query_chars}",
            )
        top_k = body.get("top_k", 10)
        if not isinstance(top_k, int) or not 1 <= top_k <= self.limits.max_top_k:
            raise ApiError(422, "invalid_field", f"top_k must be between 1 and {self.limits.max_top_k}, not {top_k}")
        passages = body.get("passages", 2)
        if not isinstance(passages, int) or not 0 <= passages <= self.limits.max_passages:
            raise ApiError(422, "invalid_field", f"passages must be at most {self.limits.max_passages}, not {passages}")
        mode = body.get("mode", "hybrid")
        outcome = self.router.search(
            query=query,
            mode=mode,
            top_k=top_k,
            filter=body.get("filter"),
            alpha=body.get("alpha"),
            passages=passages,
            vector=body.get("vector"),
            stats=body.get("stats", "global"),
            allow_partial=bool(body.get("allow_partial", False)),
        )
        answer: dict[str, Any] = {
            "query": query,
            "mode": str(mode).lower(),
            "hits": [
                {
                    "id": h.id,
                    "score": h.score,
                    "title": h.title,
                    "metadata": h.metadata,
                    "passages": [
                        {
                            "text": p.text,
                            "start": p.start,
                            "end": p.end,
                            "score": p.score,
                            "highlights": [list(x) for x in p.highlights],
                        }
                        for p in h.passages
                    ],
                }
                for h in outcome.hits
            ],
            "offset": 0,
            "total": outcome.total,
            "took_ms": 0.0,
        }
        if body.get("allow_partial"):
            answer["missing_shards"] = outcome.missing_shards
        return answer


class RouterDeployment:
    """The HTTP ingress deployment: embeds queries, scatters to the shard deployments through
    their handles and answers as ``ibex serve``."""

    def __init__(
        self,
        name: str,
        model: str,
        shard_names: Sequence[str],
        shard_handles: Sequence[Any],
        api_keys: str = "",
        limits: Optional[Limits] = None,
        device: str = "auto",
    ) -> None:
        limits = limits or Limits()
        self.embedder = Embedder(model, device=device)
        shards = [ServeShard(n, h, limits.read_timeout_s) for n, h in zip(shard_names, shard_handles)]
        self.api = RestApi(name, ScatterGather(shards, self.embedder.embed_query), api_keys, limits)

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        body = await request.body()
        # Shard calls block on their answers: off the event loop, on a worker thread.
        status, answer = await asyncio.to_thread(
            self.api.respond,
            request.method,
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        return JSONResponse(answer, status_code=status)

    def search(self, **request: Any) -> dict[str, Any]:
        """A search through the deployment handle (as the HTTP route, without HTTP)."""
        status, answer = self.api.respond("POST", f"/v1/indexes/{self.api.name}/search", {}, json.dumps(request).encode())
        if status != 200:
            raise ApiError(status, answer["error"]["code"], answer["error"]["message"])
        return answer


def application(
    directory: str,
    name: Optional[str] = None,
    replicas: int = 1,
    api_keys: Optional[str] = None,
    limits: Optional[Limits] = None,
    device: str = "auto",
    shard_ray_actor_options: Optional[dict[str, Any]] = None,
) -> Any:
    """The Serve application of the sharded index in ``directory``: one deployment per shard
    (``replicas`` each) and the router. ``name`` is the index name in the URLs (default: the
    directory's name); ``api_keys`` default to ``IBEX_API_KEYS``."""
    from ray import serve

    directory = os.path.abspath(directory)
    manifest = read_manifest(directory)
    name = name or os.path.basename(directory.rstrip("/"))
    keys = os.environ.get("IBEX_API_KEYS", "") if api_keys is None else api_keys
    parse_api_keys(keys)  # a bad key list fails here, not in a replica
    shard = serve.deployment(ShardDeployment)
    handles, names = [], []
    for entry in manifest["shards"]:
        names.append(entry["name"])
        handles.append(
            shard.options(
                name=entry["name"],
                num_replicas=replicas,
                ray_actor_options=shard_ray_actor_options or {"num_cpus": 0},
            ).bind(os.path.join(directory, entry["path"]), device)
        )
    router = serve.deployment(RouterDeployment).options(
        name="router", ray_actor_options={"num_cpus": 0}
    )
    return router.bind(name, manifest["model"]["source"], names, handles, keys, limits, device)


def run(
    directory: str,
    name: Optional[str] = None,
    replicas: int = 1,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: Optional[str] = None,
    limits: Optional[Limits] = None,
    device: str = "auto",
    app_name: str = "ibex",
) -> Any:
    """Starts Serve's HTTP proxy on ``host:port`` and deploys :func:`application`; returns the
    router's handle once every replica is up."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    return serve.run(
        application(directory, name, replicas, api_keys, limits, device),
        name=app_name,
        route_prefix="/",
    )
