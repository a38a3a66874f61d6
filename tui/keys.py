"""Every key binding of the console, with a stable id (rebindable through ``[keys]`` in the
config: binding id -> key, applied with ``App.set_keymap``). Help and footer read this table."""

from __future__ import annotations

from textual.binding import Binding

# Global keys (on the App).
# The footer shows only what fits at 120 columns (help, views, filter, the main actions,
# pause, quit); every key is in help (?).
APP_BINDINGS: list[Binding] = [
    Binding("question_mark", "help", "Help", id="app.help"),
    Binding("F", "findings", "Findings", id="app.findings"),
    Binding("A", "agents", "Agents", id="app.agents"),
    Binding("p", "toggle_pause", "Pause", id="app.pause"),
    Binding("q", "quit", "Quit", id="app.quit"),
    Binding("ctrl+r", "poll_now", "Poll now", id="app.poll", show=False),
    Binding("P", "toggle_autofix", "Pause auto-fixer", id="app.autofix_pause", show=False),
    Binding("ctrl+p", "command_palette", "Palette", id="app.palette", show=False),
]

# Keys of the main screen (lanes, detail, trace).
MAIN_BINDINGS: list[Binding] = [
    Binding("slash", "filter", "Filter", id="main.filter"),
    Binding("colon", "jump", "Jump", id="main.jump"),
    Binding("escape", "back", "Back/clear", id="main.back", show=False),
    Binding("tab", "next_pane", "Pane", id="main.next_pane", show=False),
    Binding("shift+tab", "prev_pane", "Pane back", id="main.prev_pane", show=False),
    Binding("right_square_bracket,right", "next_lane", "Next lane", id="main.next_lane",
            show=False),
    Binding("left_square_bracket,left", "prev_lane", "Prev lane", id="main.prev_lane",
            show=False),
]

# Triage across lanes (the main screen).
TRIAGE_KEYS = [
    Binding("exclamation_mark", "attention", "Attention", id="main.attention",
            tooltip="every task with a critical or warning finding, all lanes"),
    Binding("n", "next_critical", "Next critical (all lanes)", id="main.next_critical",
            show=False),
    Binding("N", "prev_critical", "Previous critical", id="main.prev_critical", show=False),
]

# Keys of the lane list (and the findings list): cursor movement.
LIST_BINDINGS: list[Binding] = [
    Binding("j,down", "cursor_down", "Down", id="list.down", show=False),
    Binding("k,up", "cursor_up", "Up", id="list.up", show=False),
    Binding("g,home", "cursor_top", "Top", id="list.top", show=False),
    Binding("G,end", "cursor_bottom", "Bottom", id="list.bottom", show=False),
    Binding("pageup,ctrl+b", "page_up", "Page up", id="list.page_up", show=False),
    Binding("pagedown,ctrl+f", "page_down", "Page down", id="list.page_down", show=False),
    Binding("enter", "select", "Task view", id="list.select", show=False),
]

# Scrolling text (detail, trace, the task view, help): the same keys as the lists.
SCROLL_BINDINGS: list[Binding] = [
    Binding("j,down", "scroll_down", "Down", id="scroll.down", show=False),
    Binding("k,up", "scroll_up", "Up", id="scroll.up", show=False),
    Binding("g,home", "scroll_home", "Top", id="scroll.top", show=False),
    Binding("G,end", "scroll_end", "Bottom", id="scroll.bottom", show=False),
    Binding("pageup,ctrl+b", "page_up", "Page up", id="scroll.page_up", show=False),
    Binding("pagedown,ctrl+f", "page_down", "Page down", id="scroll.page_down", show=False),
]

# Interventions on the task under the cursor: plan, confirm dialog, journaled apply.
ACTION_BINDINGS: list[Binding] = [
    Binding("a", "intervene('accept')", "Accept", id="act.accept"),
    Binding("r", "intervene('retry')", "Retry", id="act.retry"),
    Binding("s", "intervene('split')", "Split", id="act.split", show=False),
    Binding("x", "intervene('cancel')", "Cancel task", id="act.cancel", show=False),
    Binding("l", "intervene('release')", "Release claim", id="act.release", show=False),
    Binding("f", "intervene('sync')", "Sync", id="act.sync", show=False),
    Binding("e", "intervene('escalate')", "Escalate", id="act.escalate", show=False),
    Binding("m", "intervene('mark-read')", "Mark read", id="act.mark_read", show=False),
    Binding("d", "do_recommended", "Do the recommended action", id="act.do", show=False),
]

# Marking rows for a group action: an action key then acts on every marked task.
MARK_BINDINGS: list[Binding] = [
    Binding("space", "toggle_mark", "Mark / unmark the row", id="mark.toggle", show=False),
    Binding("v", "mark_range", "Mark a range (v at each end)", id="mark.range", show=False),
    Binding("asterisk", "mark_all", "Mark every row passing the filter", id="mark.all",
            show=False),
]

EXTRA_HELP: list[tuple[str, str]] = [
    ("1..9, 0", "go to lane N"),
    ("/ !re", "filter: a regex; a leading ! keeps the rows that do NOT match"),
    (": name", "jump to a lane or task id (also :findings, :agents, :help, :q)"),
]


def all_bindings() -> list[tuple[str, list[Binding]]]:
    return [("Global", APP_BINDINGS), ("Main screen", MAIN_BINDINGS),
            ("Interventions (task under the cursor, or every marked task)", ACTION_BINDINGS),
            ("Triage", TRIAGE_KEYS), ("Marking", MARK_BINDINGS),
            ("Lists", LIST_BINDINGS)]


def display_keys(binding: Binding, keymap: dict[str, str]) -> str:
    """The keys a binding answers to, after the user's keymap, as shown in help."""
    keys = keymap.get(binding.id or "", binding.key)
    names = []
    for k in keys.split(","):
        k = k.strip()
        names.append({"question_mark": "?", "slash": "/", "colon": ":",
                      "left_square_bracket": "[", "right_square_bracket": "]",
                      "escape": "esc", "asterisk": "*", "space": "space",
                      "exclamation_mark": "!"}.get(k, k))
    return " ".join(names)
