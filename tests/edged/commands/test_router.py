import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.counters import Counters
from edged.commands.replies import ReplyMemory
from edged.commands.response import ResponseTopics
from edged.commands.router import CommandRouter, IncomingCommand
from edged.commands.spec import MAX_COMMAND_BYTES, SENT_AT, CommandSpec
from edged.errors import CommandError
from edged.outbox import Publication
from edged.topics import REPLY, Topics


def router() -> CommandRouter:
    r = CommandRouter(Counters())
    calls: list[dict[str, Any]] = []

    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        return {"echo": args, "calls": len(calls)}

    async def refuse(args: dict[str, Any]) -> None:
        raise CommandError("bad_args", "needs x")

    async def crash(args: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    r.add(CommandSpec("echo", echo))
    r.add(CommandSpec("refuse", refuse))
    r.add(CommandSpec("crash", crash))
    return r


def cmd(name: str, payload: Any, **kw: Any) -> IncomingCommand:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return IncomingCommand(name=name, payload=raw, **kw)


async def test_valid_command_gets_an_ok_reply_with_its_id() -> None:
    out = await router().handle(cmd("echo", {"id": "a1", "args": {"x": 1}}))
    assert out.reply.ok and out.reply.id == "a1"
    assert out.reply.result == {"echo": {"x": 1}, "calls": 1}


async def test_duplicate_id_returns_the_cached_reply_without_running_twice() -> None:
    r = router()
    first = await r.handle(cmd("echo", {"id": "a1"}))
    again = await r.handle(cmd("echo", {"id": "a1"}))
    assert again.reply == first.reply
    assert r.counters["cmd.duplicate"] == 1


async def test_not_json_is_refused_with_bad_json() -> None:
    out = await router().handle(cmd("echo", b"{nope"))
    assert not out.reply.ok and out.reply.error and out.reply.error.code == "bad_json"


async def test_oversized_payload_is_refused_before_parsing() -> None:
    out = await router().handle(cmd("echo", b"[" * (MAX_COMMAND_BYTES + 1)))
    assert out.reply.error and out.reply.error.code == "too_large"


async def test_an_oversized_command_is_refused_with_the_id_at_its_head() -> None:
    """A `ping` of 100 KiB was refused `too_large` with a null id: dispatch, told to match
    replies by id, could not tell which command it refused. Its id is read from the
    payload's head (not the whole payload), as for one answered `interrupted` unread."""
    payload = b'{"id": "p7", "args": {"pad": "' + b"x" * (100 * 1024) + b'"}}'
    out = await router().handle(cmd("echo", payload))
    assert out.reply.error and out.reply.error.code == "too_large"
    assert out.reply.id == "p7"


async def test_missing_id_is_refused_with_missing_id() -> None:
    out = await router().handle(cmd("echo", {"args": {}}))
    assert out.reply.error and out.reply.error.code == "missing_id"
    assert out.reply.id is None


async def test_wrong_types_are_refused_with_the_field_named() -> None:
    out = await router().handle(cmd("echo", {"id": "a", "args": [1, 2]}))
    assert out.reply.error and out.reply.error.code == "bad_request"
    assert "args" in out.reply.error.message
    assert out.reply.id == "a"


async def test_json_that_is_not_an_object_is_refused() -> None:
    out = await router().handle(cmd("echo", [1, 2]))
    assert out.reply.error and out.reply.error.code == "bad_request"


async def test_unknown_command_lists_the_known_ones() -> None:
    out = await router().handle(cmd("fly", {"id": "a"}))
    assert out.reply.error and out.reply.error.code == "unknown_command"
    assert "echo" in out.reply.error.message


async def test_invalid_command_name_replies_on_the_invalid_topic() -> None:
    out = await router().handle(cmd("../#x", {"id": "a"}))
    assert out.name == "_invalid"
    assert out.reply.error and out.reply.error.code == "unknown_command"


async def test_handler_error_becomes_its_code() -> None:
    out = await router().handle(cmd("refuse", {"id": "a"}))
    assert out.reply.error and (out.reply.error.code, out.reply.error.message) == (
        "bad_args",
        "needs x",
    )


async def test_handler_crash_is_an_internal_error_reply() -> None:
    out = await router().handle(cmd("crash", {"id": "a"}))
    assert out.reply.error and out.reply.error.code == "internal"


async def test_a_wildcard_response_topic_refuses_the_command_unrun() -> None:
    r = router()
    out = await r.handle(cmd("echo", {"id": "a"}, response_topic="x/#"))
    assert out.response_topic is None and out.correlation is None
    assert out.reply.error and out.reply.error.code == "bad_response_topic"
    ran = await r.handle(cmd("echo", {"id": "b"}))
    assert ran.reply.result == {"echo": {}, "calls": 1}


async def test_a_response_topic_on_a_node_base_refuses_the_command() -> None:
    r = CommandRouter(Counters(), response_topics=ResponseTopics("rnst/v1"))
    calls: list[int] = []

    async def run(args: dict[str, Any]) -> int:
        calls.append(1)
        return 1

    r.add(CommandSpec("mode.set", run))
    out = await r.handle(
        cmd("mode.set", {"id": "a"}, response_topic="rnst/v1/test/shuttle-07/alarm/panic")
    )
    assert out.reply.error and out.reply.error.code == "bad_response_topic"
    assert "node" in out.reply.error.message and not calls
    assert out.response_topic is None


async def test_a_command_spelled_with_slashes_is_the_dotted_command() -> None:
    r = router()
    r.add(CommandSpec("echo.more", r._routes["echo"].handler))
    out = await r.handle(cmd("echo/more", {"id": "s1"}))
    assert out.name == "echo.more" and out.reply.ok


async def test_the_same_command_in_both_spellings_is_one_command() -> None:
    r = router()
    r.add(CommandSpec("echo.more", r._routes["echo"].handler))
    topic = "base/cmd/echo.more"  # the uplink passes the dotted topic for either spelling
    first = await r.handle(cmd("echo.more", {"id": "s1"}, topic=topic))
    again = await r.handle(cmd("echo/more", {"id": "s1"}, topic=topic))
    assert again.reply == first.reply and r.counters["cmd.duplicate"] == 1


async def test_an_integer_too_long_for_python_is_bad_json_not_a_crash() -> None:
    out = await router().handle(cmd("echo", b'{"id": "a", "args": {"n": ' + b"9" * 5000 + b"}}"))
    assert out.reply.error and out.reply.error.code == "bad_json"


async def test_a_result_that_cannot_be_json_becomes_an_internal_error() -> None:
    r = router()

    async def cyclic(args: dict[str, Any]) -> Any:
        loop: list[Any] = []
        loop.append(loop)
        return loop

    r.add(CommandSpec("cyclic", cyclic))
    out = await r.handle(cmd("cyclic", {"id": "c"}))
    assert out.reply.error and out.reply.error.code == "internal" and out.reply.id == "c"


async def test_a_failure_outside_the_handler_is_still_one_reply() -> None:
    class Broken(Counters):
        def inc(self, key: str, n: int = 1) -> None:
            if key == "cmd.ok":
                raise RuntimeError("counter broken")
            super().inc(key, n)

    r = CommandRouter(Broken())

    async def fine(args: dict[str, Any]) -> int:
        return 1

    r.add(CommandSpec("fine", fine))
    out = await r.handle(cmd("fine", {"id": "x"}))
    assert out.reply.error and out.reply.error.code == "internal"


async def test_a_failure_after_the_handler_is_answered_with_the_command_id() -> None:
    """The handler ran (a door may have opened) and keeping its reply failed (the state
    store refused it): the reply is `internal`, and with no id dispatch could not tell which
    command it answered."""

    def refused(key: str, value: Any) -> None:
        raise RuntimeError("the state store is closed")

    r = CommandRouter(Counters(), replies=ReplyMemory(get_state=lambda k, d: d, set_state=refused))
    ran: list[int] = []

    async def fine(args: dict[str, Any]) -> int:
        ran.append(1)
        return 1

    r.add(CommandSpec("fine", fine))
    out = await r.handle(cmd("fine", {"id": "x"}))
    assert ran == [1]
    assert out.reply.error and out.reply.error.code == "internal" and out.reply.id == "x"


async def test_response_topic_and_correlation_are_passed_through() -> None:
    out = await router().handle(
        cmd("echo", {"id": "a"}, response_topic="ops/replies/7", correlation=b"\x01\x02")
    )
    assert (out.response_topic, out.correlation) == ("ops/replies/7", b"\x01\x02")


async def test_a_resent_command_naming_another_response_topic_gets_no_copy_there() -> None:
    """Who saw a command can send its bytes again with a response topic of their own:
    neither the remembered digest nor the signature covers it."""
    r = router()
    first = await r.handle(cmd("echo", {"id": "a"}, response_topic="ops/c1", correlation=b"1"))
    again = await r.handle(cmd("echo", {"id": "a"}, response_topic="spy/x", correlation=b"1"))
    assert again.reply == first.reply
    assert (again.response_topic, again.correlation) == (None, None)
    assert r.counters["cmd.duplicate_elsewhere"] == 1


async def test_a_resent_command_with_its_response_topic_gets_the_copy_again() -> None:
    r = router()
    first = await r.handle(cmd("echo", {"id": "a"}, response_topic="ops/c1", correlation=b"1"))
    again = await r.handle(cmd("echo", {"id": "a"}, response_topic="ops/c1", correlation=b"1"))
    assert again == first


async def test_a_resent_command_with_other_correlation_data_gets_no_copy() -> None:
    r = router()
    await r.handle(cmd("echo", {"id": "a"}, response_topic="ops/c1", correlation=b"1"))
    again = await r.handle(cmd("echo", {"id": "a"}, response_topic="ops/c1", correlation=b"2"))
    assert again.response_topic is None


async def test_a_resent_command_that_first_came_without_a_response_topic_gets_no_copy() -> None:
    r = router()
    await r.handle(cmd("echo", {"id": "a"}))
    again = await r.handle(cmd("echo", {"id": "a"}, response_topic="spy/x", correlation=b"1"))
    assert again.reply.ok and again.response_topic is None


async def test_a_resent_command_naming_a_refused_response_topic_gets_its_reply_only() -> None:
    r = router()
    first = await r.handle(cmd("echo", {"id": "a"}))
    again = await r.handle(cmd("echo", {"id": "a"}, response_topic="x/#", correlation=b"1"))
    assert again.reply == first.reply and again.response_topic is None


async def test_a_command_resent_after_a_restart_gets_no_copy_on_its_response_topic() -> None:
    """The disk keeps no response topic: the first copy went to the outbox with the entry."""
    state: dict[str, Any] = {}
    kept = {"get_state": state.get, "set_state": state.__setitem__}
    first = CommandRouter(Counters(), replies=ReplyMemory(**kept))
    first.add(CommandSpec("echo", _echo))
    await first.handle(cmd("echo", {"id": "a"}, response_topic="ops/c1", correlation=b"1"))
    restarted = CommandRouter(Counters(), replies=ReplyMemory(**kept))
    restarted.add(CommandSpec("echo", _echo))
    again = await restarted.handle(
        cmd("echo", {"id": "a"}, response_topic="ops/c1", correlation=b"1")
    )
    assert again.reply.ok and again.response_topic is None
    assert restarted.counters["cmd.duplicate"] == 1


async def _echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args}


async def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    out = await router().handle(cmd("echo", b"[" * 60000 + b"]" * 60000))
    assert not out.reply.ok


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(max_size=80),
    payload=st.binary(max_size=2000),
    response_topic=st.none() | st.text(max_size=300),
)
async def test_any_input_gets_exactly_one_reply_that_can_be_sent(
    name: str, payload: bytes, response_topic: str | None
) -> None:
    out = await router().handle(
        IncomingCommand(name=name, payload=payload, response_topic=response_topic)
    )
    assert out.reply.ok or out.reply.error is not None
    json.dumps(out.reply.to_json_dict(), allow_nan=False)
    Publication.make(Topics("p", "f", "n"), REPLY, out.reply, name=out.name)


@settings(max_examples=200, deadline=None)
@given(
    doc=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
async def test_any_json_document_gets_exactly_one_reply(doc: Any) -> None:
    out = await router().handle(cmd("echo", doc))
    assert out.reply.ok or out.reply.error is not None


async def test_a_command_shared_by_kind_goes_to_its_owner_and_the_first_is_the_default() -> None:
    r = CommandRouter(Counters())
    got: list[tuple[str, dict[str, Any]]] = []

    async def panic(args: dict[str, Any]) -> str:
        got.append(("panic", args))
        return "panic"

    async def lost(args: dict[str, Any]) -> str:
        got.append(("lost", args))
        return "lost"

    r.add(CommandSpec("alarm.ack", panic, kind="panic"))
    r.add(CommandSpec("alarm.ack", lost, kind="outbox_lost"))
    default = await r.handle(cmd("alarm.ack", {"id": "1", "args": {"by": "ops"}}))
    chosen = await r.handle(cmd("alarm.ack", {"id": "2", "args": {"kind": "outbox_lost"}}))
    unknown = await r.handle(cmd("alarm.ack", {"id": "3", "args": {"kind": "fire"}}))
    assert (default.reply.result, chosen.reply.result) == ("panic", "lost")
    assert got == [("panic", {"by": "ops"}), ("lost", {})]  # the owner does not see `kind`
    assert unknown.reply.error is not None and unknown.reply.error.code == "bad_args"
    assert unknown.reply.error.message == "kind must be panic or outbox_lost"


async def test_a_handler_sees_when_its_command_was_sent_and_only_while_it_runs() -> None:
    r = CommandRouter(Counters())

    async def when(args: dict[str, Any]) -> int | None:
        return SENT_AT.get()

    r.add(CommandSpec("when", when))
    sent = await r.handle(cmd("when", {"id": "1", "ts": 1_796_000_000_000}))
    unsent = await r.handle(cmd("when", {"id": "2"}))
    assert (sent.reply.result, unsent.reply.result) == (1_796_000_000_000, None)
    assert SENT_AT.get() is None


async def _nothing(args: dict[str, Any]) -> None:
    return None


@pytest.mark.parametrize(
    ("first", "second", "words"),
    [
        (CommandSpec("echo", _nothing), CommandSpec("echo", _nothing), "declared twice"),
        (CommandSpec("echo", _nothing), CommandSpec("echo", _nothing, kind="x"), "declared twice"),
        (
            CommandSpec("two", _nothing, kind="a", scope="read"),
            CommandSpec("two", _nothing, kind="b", scope="config"),
            "share a scope",
        ),
    ],
)
def test_a_command_declared_twice_is_refused_when_the_node_starts(
    first: CommandSpec, second: CommandSpec, words: str
) -> None:
    r = CommandRouter(Counters())
    r.add(first)
    with pytest.raises(ValueError, match=words):
        r.add(second)


NOT_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]


@pytest.mark.parametrize("literal", NOT_NUMBERS)
async def test_a_number_json_has_not_is_refused_bad_json_with_the_id(literal: str) -> None:
    r = router()
    payload = b'{"id":"n1","args":{"x":[1,{"y":%s}]}}' % literal.encode()
    out = await r.handle(cmd("echo", payload))
    assert out.reply.error is not None and (out.reply.id, out.reply.error.code) == (
        "n1",
        "bad_json",
    )


async def test_a_command_with_a_number_json_has_not_never_reaches_its_handler() -> None:
    r = router()
    await r.handle(cmd("echo", b'{"id":"n1","args":{"x":NaN}}'))
    out = await r.handle(cmd("echo", {"id": "n2"}))
    assert out.reply.result["calls"] == 1


@pytest.mark.parametrize(
    "literal",
    ["1e308", "-1e308", "-0", "-0.0", "5e-324", "1" + "0" * 400],
    ids=["1e308", "-1e308", "-0", "-0.0", "5e-324", "10**400"],
)
async def test_extreme_json_numbers_reach_the_handler_as_numbers(literal: str) -> None:
    out = await router().handle(cmd("echo", b'{"id":"n1","args":{"x":%s}}' % literal.encode()))
    assert out.reply.ok and out.reply.result["echo"]["x"] == json.loads(literal)


@pytest.mark.parametrize(
    "ts",
    ["1" + "0" * 400, "-1", "253402300800000", str(-(10**30))],
    ids=["10**400", "-1", "year 10000", "-10**30"],
)
async def test_an_unsigned_command_whose_ts_is_no_time_is_refused_stale_with_its_id(
    ts: str,
) -> None:
    out = await router().handle(cmd("echo", b'{"id":"t1","ts":%s}' % ts.encode()))
    assert out.reply.error is not None and (out.reply.id, out.reply.error.code) == ("t1", "stale")


@pytest.mark.parametrize("ts", ['"1750000000000"', "1.75e12", "true", "NaN", "1e308"])
async def test_a_ts_that_is_not_a_json_integer_is_refused_with_its_id(ts: str) -> None:
    out = await router().handle(cmd("echo", b'{"id":"t1","ts":%s}' % ts.encode()))
    assert out.reply.error is not None and out.reply.id == "t1"
    assert out.reply.error.code in {"bad_request", "bad_json"}


@settings(max_examples=200, deadline=None)
@given(ts=st.integers() | st.floats() | st.booleans() | st.text(max_size=20))
async def test_any_ts_gets_a_reply_with_the_id_never_internal(ts: Any) -> None:
    payload = json.dumps({"id": "t1", "ts": ts}).encode()  # NaN, Infinity as Python writes them
    out = await router().handle(cmd("echo", payload))
    assert out.reply.id == "t1"
    assert out.reply.error is None or out.reply.error.code != "internal"


@pytest.mark.parametrize(
    ("name", "payload", "named"),
    [
        ("echo", {"id": "a1"}, "echo"),  # ok
        ("refuse", {"id": "a1"}, "refuse"),  # the handler's refusal
        ("crash", {"id": "a1"}, "crash"),  # internal
        ("echo", b"{nope", "echo"),  # bad_json
        ("echo", b"[" * (MAX_COMMAND_BYTES + 1), "echo"),  # too_large
        ("echo", {"args": {}}, "echo"),  # missing_id
        ("no.such", {"id": "a1"}, "no.such"),  # unknown_command
        ("Not A Name!", {"id": "a1"}, "_invalid"),
        ("echo/x", {"id": "a1"}, "echo.x"),  # the slashed spelling, named dotted
    ],
)
async def test_every_reply_names_the_command_it_answers(
    name: str, payload: Any, named: str
) -> None:
    out = await router().handle(cmd(name, payload))
    assert out.reply.command == named
    assert out.reply.to_json_dict()["command"] == named


async def test_a_reused_id_is_refused_naming_the_command_that_reused_it() -> None:
    # a `ping` sent with the id of a command that ran is refused as the ping's reply, not
    # mistaken by a reader of copies for the first command's answer
    r = router()
    await r.handle(cmd("echo", {"id": "a1"}, topic="base/cmd/echo"))
    out = await r.handle(cmd("refuse", {"id": "a1"}, topic="base/cmd/refuse"))
    assert out.reply.error and out.reply.error.code == "reused_id"
    assert out.reply.command == "refuse"


async def test_the_remembered_reply_does_not_keep_the_name() -> None:
    # a release before this one reads the memory with extra fields forbidden: a name kept
    # there would make it forget every reply after a downgrade, and run them again
    state: dict[str, Any] = {}
    memory = ReplyMemory(get_state=state.get, set_state=state.__setitem__)
    r = CommandRouter(Counters(), replies=memory)
    r.add(CommandSpec("echo", _echo))
    first = await r.handle(cmd("echo", {"id": "a1"}))
    assert first.reply.command == "echo"
    (kept,) = json.loads(json.dumps(next(iter(state.values()))))
    assert "command" not in kept[3]
    again = await r.handle(cmd("echo", {"id": "a1"}))
    assert again.reply == first.reply


async def _echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args}


def test_the_id_of_a_big_command_never_read_is_looked_for_in_its_head_only() -> None:
    """A big command answered without being read (`interrupted` at a stop) has its id read
    from its payload's members before `args`. They were read through the whole first
    64 KiB: a commander's payload of 13,000 tiny members before its id cost 26-45 ms of the
    event loop here (a Pi Zero several times that), ten times the parse of a whole small
    payload, for each of the 64 commands a stop may answer so. Only the first 4 KiB are
    read (`id`, `ts` and `sig` come first, as edgectl writes them)."""
    r = router()
    pad = b" " * (2 * MAX_COMMAND_BYTES)
    early = b'{"id": "early", "ts": 1, "sig": "' + b"s" * 88 + b'", "args": {}}' + pad
    late = b'{' + b'"":0,' * 1000 + b'"id": "late", "args": {}}' + pad
    answers = [r.refuse(IncomingCommand("ping", p), "interrupted", "") for p in (early, late)]
    assert [a.reply.id for a in answers] == ["early", None]
