"""Access control's own logic: principals, group expansion, the policy's refusals, cache
partitions, trace visibility and the start-up canary (with a store that ignores filters)."""

from __future__ import annotations

import json

import pytest

from ragline.access.canary import FilterNotEnforced, check_filters_enforced
from ragline.access.config import AccessConfig
from ragline.access.groups import CachedExpansion, GroupResolverError, StaticGroups, expand, make_resolver
from ragline.access.policy import AccessPolicy
from ragline.access.principals import PUBLIC, AccessError, Viewer, check_principals, principals_hash
from ragline.access.readers import SourceAccess, document_readers
from ragline.access.traces import trace_readable
from ragline.llm.base import ChatMessage, ChatRequest
from ragline.retrieval.edge_store import EdgeStore
from ragline.tracing.store import SpanNode, Trace, TraceSummary


def _groups(tmp_path, text: str, name: str = "groups.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("bad", ["hana", "user:", "user: hana", "role:x", "group:a b", "", "user:\x00x", 3, None])
def test_a_malformed_principal_is_refused_naming_it(bad) -> None:
    with pytest.raises(AccessError, match="malformed"):
        check_principals([bad])


def test_a_string_is_not_a_principal_list() -> None:
    with pytest.raises(AccessError, match="list of principals"):
        check_principals("user:hana")


def test_principals_are_stored_sorted_and_unique() -> None:
    assert check_principals(["user:b", "public", "user:a", "user:b"]) == ["public", "user:a", "user:b"]


def test_nested_groups_are_flattened_and_cycles_end(tmp_path) -> None:
    path = _groups(tmp_path, """
[groups]
"group:hr" = ["user:hana", "group:payroll"]
"group:payroll" = ["user:paul", "group:audit"]
"group:audit" = ["user:ada", "group:hr"]
"group:other" = ["user:olga"]
""")
    resolver = StaticGroups(path)
    assert expand(resolver, ["user:ada"]) == {"user:ada", "group:audit", "group:hr", "group:payroll"}
    assert expand(resolver, ["user:paul"]) == {"user:paul", "group:payroll", "group:audit", "group:hr"}
    assert expand(resolver, ["user:nobody"]) == {"user:nobody"}  # unknown: only itself


def test_a_json_groups_file_works_too(tmp_path) -> None:
    path = _groups(tmp_path, json.dumps({"groups": {"group:hr": ["user:hana"]}}), "groups.json")
    assert expand(StaticGroups(path), ["user:hana"]) == {"user:hana", "group:hr"}


@pytest.mark.parametrize("text, problem", [
    ("[groups]\n\"hr\" = [\"user:hana\"]\n", "malformed"),
    ("[groups]\n\"user:x\" = [\"user:hana\"]\n", "must start with 'group:'"),
    ("[groups]\n\"group:hr\" = \"user:hana\"\n", "must be a list"),
    ("[groups]\n\"group:hr\" = [\"hana\"]\n", "malformed"),
    ("not toml ===", "cannot be parsed"),
    ("[people]\n", "expected a \\[groups\\] table"),
])  # fmt: skip
def test_a_broken_groups_file_fails_every_lookup(tmp_path, text, problem) -> None:
    resolver = StaticGroups(_groups(tmp_path, text))
    with pytest.raises(AccessError, match=problem):
        expand(resolver, ["user:hana"])


def test_a_missing_groups_file_is_a_resolver_failure(tmp_path) -> None:
    with pytest.raises(GroupResolverError, match="cannot be read"):
        expand(StaticGroups(tmp_path / "gone.toml"), ["user:hana"])


def test_a_changed_groups_file_is_read_again(tmp_path) -> None:
    path = _groups(tmp_path, '[groups]\n"group:hr" = ["user:hana"]\n')
    resolver = StaticGroups(path)
    assert "group:hr" in expand(resolver, ["user:hana"])
    path.write_text('[groups]\n"group:hr" = ["user:hugo"]\n')
    assert "group:hr" not in expand(resolver, ["user:hana"])


def test_expansions_are_reused_for_the_ttl_only() -> None:
    calls = []

    class Counting:
        def groups_of(self, principal):
            calls.append(principal)
            return ["group:g"] if principal == "user:a" else []

    now = [0.0]
    cached = CachedExpansion(Counting(), ttl=10, clock=lambda: now[0])
    assert cached(["user:a"]) == {"user:a", "group:g"}
    assert cached(["user:a"]) == {"user:a", "group:g"} and len(calls) == 2
    now[0] = 11
    cached(["user:a"])
    assert len(calls) == 4


def test_a_resolver_that_fails_or_answers_garbage_fails_the_call() -> None:
    class Down:
        def groups_of(self, principal):
            raise ConnectionError("ldap://127.0.0.1:1 refused")

    class Garbage:
        def groups_of(self, principal):
            return ["admins"]

    with pytest.raises(GroupResolverError, match="refused"):
        expand(Down(), ["user:a"])
    with pytest.raises(GroupResolverError, match="not a group:NAME"):
        expand(Garbage(), ["user:a"])


def test_an_unknown_resolver_plugin_is_named() -> None:
    with pytest.raises(ValueError, match="no such group resolver plugin"):
        make_resolver("ldap-nope", None, {})


def test_the_policy_refuses_calls_without_identity_when_enabled(tmp_path) -> None:
    policy = AccessPolicy(AccessConfig(enabled=True))
    with pytest.raises(AccessError, match="access control is enabled"):
        policy.viewer(None)
    with pytest.raises(AccessError, match="empty"):
        policy.viewer([])
    assert AccessPolicy(AccessConfig()).viewer(None) == Viewer.unrestricted()


def test_the_policy_expands_groups_adds_public_and_honours_explicit_admins(tmp_path) -> None:
    path = _groups(tmp_path, '[groups]\n"group:hr" = ["user:hana"]\n"group:root" = ["user:ops"]\n')
    policy = AccessPolicy(AccessConfig(enabled=True, groups_file=str(path), admins=["group:root"]))
    viewer = policy.viewer(["user:hana"])
    assert viewer.readable == {"user:hana", "group:hr", PUBLIC} and viewer.restricted
    admin = policy.viewer(["user:ops"])
    assert admin.admin and not admin.restricted
    # an identity given with access disabled is still honoured
    assert AccessPolicy(AccessConfig()).viewer(["user:x"]).readable == {"user:x", PUBLIC}


def test_admins_must_be_principals() -> None:
    with pytest.raises(ValueError):
        AccessConfig(admins=["root"])


def test_unknown_readers_fall_back_to_the_source_then_its_owners_never_public() -> None:
    assert document_readers(["user:b", "user:a"], SourceAccess.of(["public"]), document="d") == ["user:a", "user:b"]
    assert document_readers(None, SourceAccess.of(["group:hr"], ["user:o"]), document="d") == ["group:hr"]
    assert document_readers(None, SourceAccess.of(None, ["user:o"]), document="d") == ["user:o"]
    assert document_readers(None, SourceAccess(), document="d") == []
    with pytest.raises(AccessError, match="d: reader"):
        document_readers(["hr"], SourceAccess(), document="d")


def test_a_viewer_reads_a_chunk_only_through_an_exact_principal() -> None:
    viewer = Viewer(readable=frozenset({"user:u1", PUBLIC}))
    assert viewer.may_read(["user:u1"]) and viewer.may_read(["public"])
    assert not viewer.may_read(["user:u1-1"]) and not viewer.may_read(["user:u"])
    assert not viewer.may_read([]) and not viewer.may_read(None)
    assert Viewer.unrestricted().may_read(None)


def test_cache_keys_are_partitioned_by_principal_set_and_unchanged_without_one() -> None:
    request = ChatRequest(messages=[ChatMessage(role="user", content="q")])
    base = request.key(model="m")
    ann = request.model_copy(update={"partition": principals_hash(["user:ann", PUBLIC])})
    bob = request.model_copy(update={"partition": principals_hash(["user:bob", PUBLIC])})
    assert len({base, ann.key(model="m"), bob.key(model="m")}) == 3
    # the key of a request without a partition is what it was before access control existed
    import hashlib

    legacy = {"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": 256, "temperature": 0.0,
              "prompt_version": None}
    assert base == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()


def _trace(attributes: dict) -> Trace:
    span = SpanNode(trace_id="t" * 32, span_id="s", parent_id=None, name="query", kind="INTERNAL", start_ns=0,
                    end_ns=1, status="OK", attributes=attributes)  # fmt: skip
    summary = TraceSummary(trace_id="t" * 32, root_name="query", start="2026-01-01T00:00:00Z", duration_ms=0,
                           span_count=1, input_tokens=0, output_tokens=0, total_tokens=0, cost_usd=0, error=False)  # fmt: skip
    return Trace(summary=summary, roots=[span])


def test_a_trace_shows_only_to_callers_who_may_read_every_chunk_in_it() -> None:
    trace = _trace({"ragline.retrieval.document_ids": ["a", "b"],
                    "ragline.retrieval.readers": [json.dumps(["group:hr"]), json.dumps(["public"])]})  # fmt: skip
    hr = Viewer(readable=frozenset({"user:hana", "group:hr", PUBLIC}))
    other = Viewer(readable=frozenset({"user:olga", PUBLIC}))
    assert trace_readable(trace, hr) and not trace_readable(trace, other)
    assert trace_readable(trace, Viewer(readable=None, admin=True))
    legacy = _trace({"ragline.retrieval.document_ids": ["a"]})  # recorded before readers were
    assert not trace_readable(legacy, hr) and trace_readable(legacy, Viewer.unrestricted())
    assert trace_readable(_trace({}), other)


class FilterIgnoringStore(EdgeStore):
    """The bug class the canary exists for: a store that drops the readers condition."""

    def _native_filter(self, filters, readers=None):
        return super()._native_filter(filters, None)


def test_the_canary_passes_on_the_real_engine_and_catches_a_store_ignoring_filters(tmp_path) -> None:
    check_filters_enforced(lambda: EdgeStore(tmp_path / "good" / "shard"))
    with pytest.raises(FilterNotEnforced, match="does not apply the readers filter"):
        check_filters_enforced(lambda: FilterIgnoringStore(tmp_path / "bad" / "shard"))


def test_the_canary_runs_on_a_scratch_server_collection_and_drops_it() -> None:
    from ragline.retrieval.server_store import ServerStore

    stores = []

    def scratch():
        stores.append(ServerStore("canary-scratch", location=":memory:", drop_on_close=True))
        return stores[-1]

    check_filters_enforced(scratch)
    assert stores[0]._closed
