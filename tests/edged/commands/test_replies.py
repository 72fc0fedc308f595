"""The router's memory of what it answered, across restarts (edged.commands.replies): a
`restart` here is a new router and memory on the same state, as the state store keeps it."""

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.counters import Counters
from edged.clock import ClockSource
from edged.commands.replies import MIN_KEEP_S, STATE_KEY, ReplyMemory
from edged.commands.router import CommandRouter, IncomingCommand
from edged.commands.spec import CommandSpec
from edged.errors import CommandError
from edged.host import MemoryState
from edged.payloads import Reply

TOPIC = "rnst/v1/creuse/shuttle-07/cmd/mode.set"
DIGEST = "0" * 32


class Clock:
    def __init__(self, ms: int = 1_750_000_000_000, source: ClockSource = ClockSource.NTP):
        self.ms, self.source = ms, source

    def now(self) -> tuple[int, ClockSource]:
        return self.ms, self.source


class Node:
    """A router with `mode.set`, its memory on `state`; `restart` builds them again."""

    def __init__(self, state: MemoryState | None = None, clock: Clock | None = None) -> None:
        self.state = state if state is not None else MemoryState()
        self.clock = clock or Clock()
        self.mode = "on-demand"
        self.runs = 0
        memory = ReplyMemory(
            get_state=self.state.get,
            set_state=self.state.set,
            now=self.clock.now,
            keep_s=86400,
        )
        self.router = CommandRouter(Counters(), replies=memory)

        async def mode_set(args: dict[str, Any]) -> dict[str, Any]:
            self.runs += 1
            previous, self.mode = self.mode, args["mode"]
            return {"mode": self.mode, "previous": previous}

        self.router.add(CommandSpec("mode.set", mode_set))

    def restart(self) -> "Node":
        return Node(self.state, self.clock)

    async def send(self, cmd_id: str, mode: str) -> Reply:
        doc = {"id": cmd_id, "args": {"mode": mode}}
        cmd = IncomingCommand("mode.set", json.dumps(doc).encode(), topic=TOPIC)
        return (await self.router.handle(cmd)).reply


def reply(cmd_id: str, size: int = 10) -> Reply:
    return Reply(id=cmd_id, ok=True, result={"x": "a" * size})


async def test_an_answered_command_after_a_restart_gets_its_first_reply() -> None:
    node = Node()
    first = await node.send("m-old", "out-of-service")
    again = await node.restart().send("m-old", "out-of-service")
    assert again == first


async def test_an_answered_command_after_a_restart_does_not_undo_a_newer_one() -> None:
    node = Node()
    await node.send("m-old", "out-of-service")
    node = node.restart()
    await node.send("m-new", "school")
    await node.send("m-old", "out-of-service")
    assert (node.mode, node.runs) == ("school", 1)


async def test_an_answered_id_with_other_content_after_a_restart_is_reused_id() -> None:
    node = Node()
    await node.send("m-old", "out-of-service")
    again = await node.restart().send("m-old", "school")
    assert again.error is not None and again.error.code == "reused_id"


async def test_a_refused_command_is_not_remembered() -> None:
    node = Node()
    cmd = IncomingCommand("nope", b'{"id":"n1"}', topic="x/cmd/nope")
    await node.router.handle(cmd)
    assert STATE_KEY not in node.state


def test_past_the_count_bound_the_oldest_answer_is_forgotten() -> None:
    memory = ReplyMemory(max_ids=3)
    for i in range(4):
        memory.remember(f"c{i}", DIGEST, reply(f"c{i}"))
    assert [memory.get(f"c{i}") is not None for i in range(4)] == [False, True, True, True]


def test_an_answer_older_than_the_session_expiry_is_forgotten() -> None:
    state, clock = MemoryState(), Clock()
    memory = ReplyMemory(get_state=state.get, set_state=state.set, now=clock.now, keep_s=7200)
    memory.remember("old", DIGEST, reply("old"))
    clock.ms += 7200_001
    memory.remember("new", DIGEST, reply("new"))
    assert (memory.get("old"), memory.get("new") is not None) == (None, True)


def test_an_answer_within_the_session_expiry_is_kept_across_a_restart() -> None:
    state, clock = MemoryState(), Clock()
    ReplyMemory(get_state=state.get, set_state=state.set, now=clock.now, keep_s=7200).remember(
        "c1", DIGEST, reply("c1")
    )
    clock.ms += 7199_000
    restarted = ReplyMemory(get_state=state.get, set_state=state.set, now=clock.now, keep_s=7200)
    assert restarted.get("c1") is not None


def test_an_answer_read_back_after_its_session_expiry_is_forgotten() -> None:
    state, clock = MemoryState(), Clock()
    ReplyMemory(get_state=state.get, set_state=state.set, now=clock.now, keep_s=7200).remember(
        "c1", DIGEST, reply("c1")
    )
    clock.ms += 7201_000
    restarted = ReplyMemory(get_state=state.get, set_state=state.set, now=clock.now, keep_s=7200)
    assert restarted.get("c1") is None


def test_without_a_persistent_session_answers_are_kept_an_hour_at_least() -> None:
    assert ReplyMemory(keep_s=0).keep_s == MIN_KEEP_S == 3600


def test_an_answer_stamped_by_an_untrusted_clock_never_leaves_by_age() -> None:
    clock = Clock(source=ClockSource.UNSYNCED)
    memory = ReplyMemory(now=clock.now, keep_s=3600)
    memory.remember("c1", DIGEST, reply("c1"))
    clock.ms, clock.source = clock.ms + 10 * 86400_000, ClockSource.NTP  # synced, far later
    memory.remember("c2", DIGEST, reply("c2"))
    assert memory.get("c1") is not None


def test_past_the_byte_bound_the_oldest_answers_are_forgotten() -> None:
    state = MemoryState()
    memory = ReplyMemory(get_state=state.get, set_state=state.set, max_bytes=2000)
    for i in range(40):
        memory.remember(f"c{i}", DIGEST, reply(f"c{i}", 100))
    assert len(json.dumps(state[STATE_KEY])) <= 2000
    assert memory.get("c39") is not None and memory.get("c0") is None


async def test_a_reply_too_large_to_keep_is_a_stand_in_after_a_restart_and_not_run() -> None:
    state = MemoryState()
    ran: list[int] = []

    def router() -> CommandRouter:
        r = CommandRouter(Counters(), replies=ReplyMemory(get_state=state.get, set_state=state.set))

        async def dump(args: dict[str, Any]) -> dict[str, Any]:
            ran.append(1)
            return {"log": ["x" * 100] * 50}

        r.add(CommandSpec("diag.dump", dump, scope="read"))
        return r

    cmd = IncomingCommand("diag.dump", b'{"id":"d1"}', topic="x/cmd/diag.dump")
    first = (await router().handle(cmd)).reply
    again = (await router().handle(cmd)).reply
    assert first.ok and len(ran) == 1
    assert again.error is not None and (again.id, again.error.code) == ("d1", "reply_not_kept")


async def test_a_refusal_by_the_command_itself_is_its_reply_and_is_not_run_again() -> None:
    """An `alarm.ack` refused `no_alarm`, delivered again once an alarm is up (a QoS 1
    resend, after a restart), gets its refusal again: it must not clear an alarm raised
    after it was sent (docs/topics.md, *Idempotence*)."""
    state = MemoryState()
    alarm = {"active": False}

    def router() -> CommandRouter:
        r = CommandRouter(Counters(), replies=ReplyMemory(get_state=state.get, set_state=state.set))

        async def ack(args: dict[str, Any]) -> dict[str, Any]:
            if not alarm["active"]:
                raise CommandError("no_alarm", "no panic alarm is active")
            alarm["active"] = False
            return {"acked": True}

        r.add(CommandSpec("alarm.ack", ack))
        return r

    cmd = IncomingCommand("alarm.ack", b'{"id":"a1"}', topic="x/cmd/alarm.ack")
    first = (await router().handle(cmd)).reply
    alarm["active"] = True  # the button pressed after dispatch sent its ack
    again = (await router().handle(cmd)).reply
    assert first.error is not None and first.error.code == "no_alarm"
    assert again == first and alarm["active"]


HOSTILE_STATE = [
    "not a list",
    [["c1"]],
    [["c1", "short", None, {"id": "c1", "ok": True}]],
    [["c1", DIGEST, "yesterday", {"id": "c1", "ok": True}]],
    [["c1", DIGEST, None, {"ok": "maybe"}]],
    [[1, DIGEST, None, {"id": "c1", "ok": True}]],
    [None, 5, {}],
]


def test_a_state_value_that_is_not_a_memory_is_skipped_not_a_crash() -> None:
    for value in HOSTILE_STATE:
        state = MemoryState({STATE_KEY: value})
        memory = ReplyMemory(get_state=state.get, set_state=state.set)
        assert memory.get("c1") is None, value
        memory.remember("c2", DIGEST, reply("c2"))
        assert memory.get("c2") is not None


def test_readable_answers_beside_a_broken_one_are_kept() -> None:
    good = ["c1", DIGEST, None, {"id": "c1", "ok": True, "result": 1}]
    state = MemoryState({STATE_KEY: [["broken"], good]})
    assert ReplyMemory(get_state=state.get, set_state=state.set).get("c1") is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([f"c{i}" for i in range(30)]), st.integers(0, 3000)),
        min_size=1,
        max_size=80,
    )
)
def test_any_run_of_answers_stays_bounded_and_reads_back_the_same(
    answers: list[tuple[str, int]],
) -> None:
    state = MemoryState()
    memory = ReplyMemory(get_state=state.get, set_state=state.set, max_ids=10, max_bytes=8000)
    for cmd_id, size in answers:
        memory.remember(cmd_id, DIGEST, reply(cmd_id, size))
    stored = state[STATE_KEY]
    assert len(stored) <= 10 and len(json.dumps(stored)) <= 8000
    last = answers[-1][0]
    assert memory.get(last) is not None
    restarted = ReplyMemory(get_state=state.get, set_state=state.set, max_ids=10, max_bytes=8000)
    kept = {row[0]: row[3] for row in stored}
    for cmd_id, _ in answers:
        answer = restarted.get(cmd_id)
        assert (answer and answer.reply.to_json_dict()) == kept.get(cmd_id)
