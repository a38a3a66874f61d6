"""The agents view at fifty agents (issue 12, deliverable 4): problems first (dead, zombie
claim, locked out, stale), then natural order by name; findings per agent; j/k/g/G; enter
goes to the agent's task."""

from __future__ import annotations

import json
from pathlib import Path

from qwarden.tui.screens.agents import AgentsScreen
from qwarden.tui.widgets.agents_list import AgentsList, natural_key
from tests.builders import StateBuilder
from tests.pilot import frozen_app


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["agent-10", "agent-2", "Agent-1", "agent-2b", "b"]
    assert sorted(names, key=natural_key) == ["Agent-1", "agent-2", "agent-2b", "agent-10",
                                              "b"]


def fleet(tmp_path: Path) -> StateBuilder:
    b = StateBuilder(tmp_path)
    for i in range(1, 51):
        name = f"impl-{i}"
        if i == 7:  # stopped, still holding a claim: dead
            b.agent(name, running=False, heartbeat_age=30, finished_age=20)
            b.task("dead0007", db_queue="claimed", db={"claimed_by": name, "claimed_at": 900},
                   trail=[("CLAIMED_BY", name), ("CLAIMED_AT", 900)])
        elif i == 30:  # running, silent for hours, holding its claim: a zombie claim
            b.agent(name, heartbeat_age=3 * 3600, started_age=4 * 3600)
            b.task("zomb0030", db_queue="claimed",
                   db={"claimed_by": name, "claimed_at": 4 * 3600},
                   trail=[("CLAIMED_BY", name), ("CLAIMED_AT", 4 * 3600)])
        elif i == 12:  # locked out: consecutive failures
            b.agent(name, heartbeat_age=20)
        elif i == 41:  # running, newest signal 20 min old: stale
            b.agent(name, heartbeat_age=1200, started_age=1300)
        else:
            b.agent(name, heartbeat_age=10, status=(f"work{i:04d}", 10))
            b.task(f"work{i:04d}", db_queue="claimed",
                   db={"claimed_by": name, "claimed_at": 600},
                   trail=[("CLAIMED_BY", name), ("CLAIMED_AT", 600)])
    b.build()
    st = b.root / "agents" / "impl-12" / "state.json"
    state = json.loads(st.read_text())
    state["consecutive_failures"] = 5
    st.write_text(json.dumps(state))
    return b


async def test_fifty_agents_problems_first_natural_order_and_enter(tmp_path: Path) -> None:
    b = fleet(tmp_path)
    app = frozen_app(b.root, b.now.astimezone())
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("A")
        await pilot.pause()
        assert isinstance(app.screen, AgentsScreen)
        lst = app.screen.query_one(AgentsList)
        rows = list(lst.rows)
        assert len(rows) == 50
        problems = [(n, lst.by_name[n].problem) for n in rows[:4]]
        assert problems == [("impl-7", "dead"), ("impl-30", "zombie"),
                            ("impl-12", "locked out"), ("impl-41", "stale")]
        rest = rows[4:]
        assert rest == sorted(rest, key=natural_key) and rest[:3] == ["impl-1", "impl-2",
                                                                      "impl-3"]
        assert lst.by_name["impl-30"].findings >= 1  # its zombie claim
        assert "findings 0" in lst.render_row("impl-1", 120).plain
        await pilot.press("j")
        assert lst.cursor == 1
        await pilot.press("G")
        assert lst.cursor == 49
        await pilot.press("g", "j")
        assert lst.current_key == "impl-30"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is app.main_screen
        assert app.main_screen.lane_list.current_key == "zomb0030"
