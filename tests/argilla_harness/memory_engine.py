"""A test-only search engine for argilla-server 2.8: an in-memory index of the server's records.

argilla-server needs Elasticsearch or OpenSearch, which these machines cannot run. Its engines
are registered by name (`SearchEngine.register`) and chosen with ``ARGILLA_SEARCH_ENGINE``, so
`serve.py` imports this module to register ``rewardlab-memory``. Like the Elasticsearch engine,
it keeps one document per record, built from the rows the server hands it (fields, metadata,
status, responses) and kept current by the server's index calls; filters, sorts, progress and
metadata metrics are answered from those documents.

The server makes a new engine object per request, so the index lives at module level: run ONE
uvicorn process. Simplified on purpose: text search matches every word as a case-insensitive
substring, results come in indexing order (no scores, no per-user shuffle), suggestions and
vectors are not indexed, similarity search is refused. Tests must not assert Elasticsearch's
ranking.

Runs inside the argilla-server venv (see harness.py), never in rewardlab's own.
"""

from __future__ import annotations

from collections import Counter
from statistics import fmean
from typing import Any
from uuid import UUID

from argilla_server.enums import MetadataPropertyType, ResponseStatusFilter, SortOrder
from argilla_server.search_engine import (
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)

ENGINE_NAME = "rewardlab-memory"
# record id -> document; one process-wide index shared by the per-request engine objects
DOCUMENTS: dict[UUID, dict[str, Any]] = {}


def _response_document(response) -> dict[str, Any]:
    values = response.values or {}
    return {
        "status": str(response.status),
        "user_id": response.user_id,
        "values": {question: value.get("value") for question, value in values.items()},
    }


def _record_document(record) -> dict[str, Any]:
    return {
        "dataset_id": record.dataset_id,
        "id": record.id,
        "external_id": record.external_id,
        "status": str(record.status),
        "inserted_at": record.inserted_at,
        "updated_at": record.updated_at,
        "fields": dict(record.fields or {}),
        "metadata": dict(record.metadata_ or {}),
        "responses": {response.id: _response_document(response) for response in record.responses},
    }


def _documents(dataset_id: UUID) -> list[dict[str, Any]]:
    return [doc for doc in DOCUMENTS.values() if doc["dataset_id"] == dataset_id]


def _scope_value(doc: dict, scope) -> Any:
    if isinstance(scope, MetadataFilterScope):
        return doc["metadata"].get(scope.metadata_property)
    if isinstance(scope, RecordFilterScope):
        return doc[scope.property]
    raise NotImplementedError(f"the test search engine cannot filter on {scope}")


def _value_matches(value: Any, condition) -> bool:
    if value is None:
        return False
    if isinstance(value, list):  # multi-label answers match on any label
        return any(_value_matches(item, condition) for item in value)
    if isinstance(condition, TermsFilter):
        return str(value) in condition.values
    low, high = condition.ge, condition.le
    return (low is None or value >= low) and (high is None or value <= high)


def _user_responses(doc: dict, scope: ResponseFilterScope) -> list[dict]:
    responses = doc["responses"].values()
    return [r for r in responses if scope.user is None or r["user_id"] == scope.user.id]


def _response_matches(doc: dict, condition) -> bool:
    scope: ResponseFilterScope = condition.scope
    responses = _user_responses(doc, scope)
    if scope.question:
        return any(_value_matches(r["values"].get(scope.question), condition) for r in responses)
    if scope.property != "status" or not isinstance(condition, TermsFilter):
        raise NotImplementedError(f"the test search engine cannot filter responses on {scope}")
    wanted = set(condition.values)
    pending = ResponseStatusFilter.pending in wanted and not responses
    return pending or any(r["status"] in wanted for r in responses)


def _matches(doc: dict, condition) -> bool:
    if isinstance(condition, AndFilter):
        return all(_matches(doc, part) for part in condition.filters)
    if isinstance(condition.scope, ResponseFilterScope):
        return _response_matches(doc, condition)
    return _value_matches(_scope_value(doc, condition.scope), condition)


def _text(value: Any) -> str:
    if isinstance(value, list):  # a chat field: [{"role": ..., "content": ...}]
        return " ".join(str(message.get("content", "")) for message in value)
    return str(value)


def _text_matches(doc: dict, query: TextQuery | str | None) -> bool:
    if query is None:
        return True
    query = TextQuery(q=query) if isinstance(query, str) else query
    fields = doc["fields"]
    haystack = (
        _text(fields.get(query.field)) if query.field else " ".join(map(_text, fields.values()))
    )
    return all(word in haystack.lower() for word in query.q.lower().split())


def _sort_value(doc: dict, scope) -> Any:
    if not isinstance(scope, ResponseFilterScope):
        return _scope_value(doc, scope)
    key = scope.question or scope.property
    values = [
        r["values"].get(key) if scope.question else r.get(key) for r in _user_responses(doc, scope)
    ]
    values = [value for value in values if value is not None]
    if not values:
        return None
    return fmean(values) if all(isinstance(v, int | float) for v in values) else min(values)


def _sorted(docs: list[dict], sort) -> list[dict]:
    # Stable sorts from the least significant key up; records missing a key go last (as in ES).
    for order in reversed(sort or []):
        present = [d for d in docs if _sort_value(d, order.scope) is not None]
        missing = [d for d in docs if _sort_value(d, order.scope) is None]
        present.sort(
            key=lambda d: _sort_value(d, order.scope), reverse=order.order == SortOrder.desc
        )
        docs = present + missing
    return docs


@SearchEngine.register(engine_name=ENGINE_NAME)
class MemorySearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> MemorySearchEngine:
        return cls()

    async def close(self):
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "documents": len(DOCUMENTS)}

    async def create_index(self, dataset):
        pass  # documents carry their dataset id: nothing to set up

    async def delete_index(self, dataset):
        for doc in _documents(dataset.id):
            del DOCUMENTS[doc["id"]]

    async def configure_metadata_property(self, dataset, metadata_property):
        pass

    async def index_records(self, dataset, records):
        for record in records:
            DOCUMENTS[record.id] = _record_document(record)

    async def partial_record_update(self, record, **update):
        DOCUMENTS[record.id].update(update)

    async def delete_records(self, dataset, records):
        for record in records:
            DOCUMENTS.pop(record.id, None)

    async def update_record_response(self, response):
        DOCUMENTS[response.record_id]["responses"][response.id] = _response_document(response)

    async def delete_record_response(self, response):
        DOCUMENTS[response.record_id]["responses"].pop(response.id, None)

    async def update_record_suggestion(self, suggestion):
        pass  # suggestions are not indexed

    async def delete_record_suggestion(self, suggestion):
        pass

    async def get_dataset_progress(self, dataset) -> dict:
        if dataset.is_draft:
            return {}
        statuses = Counter(doc["status"] for doc in _documents(dataset.id))
        return {"total": sum(statuses.values()), **statuses}

    async def get_dataset_user_progress(self, dataset, user) -> dict:
        if dataset.is_draft:
            return {}
        statuses = Counter(
            response["status"]
            for doc in _documents(dataset.id)
            for response in doc["responses"].values()
            if response["user_id"] == user.id
        )
        return {"total": sum(statuses.values()), **statuses}

    async def search(
        self,
        dataset,
        query=None,
        filter=None,
        sort=None,
        offset: int = 0,
        limit: int = 100,
        user_id=None,  # the server passes it for per-user views; ES seeds a shuffle with it
    ) -> SearchResponses:
        docs = [
            doc
            for doc in _documents(dataset.id)
            if _text_matches(doc, query) and (filter is None or _matches(doc, filter))
        ]
        page = _sorted(docs, sort)[offset : offset + limit]
        return SearchResponses(
            items=[SearchResponseItem(record_id=doc["id"], score=None) for doc in page],
            total=len(docs),
        )

    async def compute_metrics_for(self, metadata_property):
        name = metadata_property.name
        values = [
            doc["metadata"][name]
            for doc in _documents(metadata_property.dataset_id)
            if doc["metadata"].get(name) is not None
        ]
        if metadata_property.type == MetadataPropertyType.terms:
            counts = Counter(str(value) for value in values)
            terms = [TermsMetrics.TermCount(term=t, count=c) for t, c in counts.most_common()]
            return TermsMetrics(total=len(values), values=terms)
        metrics = (
            IntegerMetadataMetrics
            if metadata_property.type == MetadataPropertyType.integer
            else FloatMetadataMetrics
        )
        return metrics(min=min(values, default=None), max=max(values, default=None))

    async def similarity_search(self, *args, **kwargs) -> SearchResponses:
        raise NotImplementedError("the test search engine indexes no vectors")
