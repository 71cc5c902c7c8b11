"""The report of `scripts/e2e_real.py`, on journals of offline runs: no server, no network.

`make e2e-real` runs the same commands against a real model; here they run on the bundled
offline model, so that what the report reads from a journal, and when it says a run went wrong,
is tested in CI.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path

import pytest

from hubspoke import Foreman, SQLiteStore
from hubspoke.events import EventKind
from tests.helpers import Killed, kill_when

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import e2e_real
from e2e_real import Command, RunFigures


def _timeless(command: Command, number: int) -> Command:
    """`command` with its times zeroed and run ids and journal path made stable."""
    runs = [
        dataclasses.replace(r, run_id=f"run_{number}", elapsed=0.0, request_seconds=0.0)
        for r in command.runs
    ]
    argv = [a if not a.endswith("journal.db") else "J" for a in command.argv]
    return dataclasses.replace(command, argv=argv, seconds=0.0, stderr="", runs=runs)


def test_offline_runs_of_the_e2e_plan_are_reported_from_the_journal(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    example = e2e_real.readme_example()
    (tmp_path / "qa.py").write_text(example, encoding="utf-8")
    # The offline model takes 200 ms a request, the role 0.05 s: every attempt times out.
    (tmp_path / "qa_timeout.py").write_text(e2e_real.with_timeout(example, 0.05), "utf-8")
    topic = ["--input", e2e_real.README_INPUT]

    commands = [
        e2e_real.run_command("readme", ["run", "qa.py:workflow", *topic], tmp_path, db),
        e2e_real.run_command(
            "readme-timeout",
            ["run", "qa_timeout.py:workflow", *topic, "--latency", "200"],
            tmp_path,
            db,
        ),
        e2e_real.run_command("sales", ["demo", "sales"], tmp_path, db),
    ]

    assert [c.exit_code for c in commands] == [0, 0, 0], [c.stderr for c in commands]
    assert [p for c in commands for p in e2e_real.problems(c)] == []
    assert e2e_real.exit_code(commands) == 0
    stable = [_timeless(c, i) for i, c in enumerate(commands)]
    readme, timeout, sales = (c.runs for c in stable)
    assert readme == [
        RunFigures(
            run_id="run_0", workflow="qa", status="completed", reason="", elapsed=0.0,
            requests=2, failed_requests=0, input_tokens=315, output_tokens=16,
            request_seconds=0.0, answers=Counter(encyclopedia=1, final_result=1),
            tool_calls=Counter(encyclopedia=1), outcomes=Counter(output=2), accepted=2,
        )
    ]  # fmt: skip
    assert timeout == [
        RunFigures(
            run_id="run_1", workflow="qa", status="waiting",
            reason="phase 'research' (fail_fast): 0 of 1 items accepted, 1 escalated, waiting "
            "for a person",
            elapsed=0.0, requests=3, failed_requests=0, cancelled_requests=3,
            input_tokens=1267, output_tokens=3072,  # cut short: charged their worst case
            request_seconds=0.0, outcomes=Counter(timed_out=3), retries=2,
            first_correction="Your previous attempt failed (timed_out): no result within 0.05s",
            escalated=1,
            first_escalation="failure ladder exhausted (timed_out: no result within 0.05s)",
        )
    ]  # fmt: skip
    assert sales == [
        RunFigures(
            run_id="run_2", workflow="sales", status="waiting",
            reason="1 item(s) wait for a person's decision: contacts[6]", elapsed=0.0,
            requests=46, failed_requests=0, input_tokens=22_454, output_tokens=3_156,
            request_seconds=0.0,
            answers=Counter(company_signals=29, final_result=22, list_people=10,
                            search_companies=1, ask_human=1),
            tool_calls=Counter(company_signals=29, list_people=10, search_companies=1),
            outcomes=Counter(output=20, invalid=2, needs_human=1), retries=2,
            first_correction="Your previous output was invalid:\n- cited_signal: Field required",
            first_invalid="output does not match Draft", accepted=20, escalated=1,
            first_escalation="No plausible decision-maker at Marex Logistics (we know: Software "
            "Engineer, Operations Analyst, Account Manager, Office Manager). Who should receive "
            "the outreach?",
        )
    ]  # fmt: skip
    assert e2e_real.render(stable).splitlines()[-4:] == [
        "command         exit  state      wall s  requests  tokens in/out  tools  invalid  retried"
        "  timed out",
        "readme          0     completed  0.0     2         315/16         1      0        0"
        "        0",
        "readme-timeout  0     waiting    0.0     3         1,267/3,072    0      0        2"
        "        3",
        "sales           0     waiting    0.0     46        22,454/3,156   40     2        2"
        "        0",
    ]
    assert e2e_real.render(stable[1:2]).splitlines()[:11] == [
        '== readme-timeout: hubspoke run qa_timeout.py:workflow --input \'{"topic": "tea"}\''
        " --latency 200 --db J --json",
        "   exit code 0 after 0.0 s",
        "   run run_1 (qa): waiting, a declared state; reason: \"phase 'research' (fail_fast):"
        ' 0 of 1 items accepted, 1 escalated, waiting for a person"',
        "   model requests 0 answered, 3 cut short, 0 failed; tokens in 1,267 / out 3,072;"
        " 0.0 s in requests, 0.0 s in the run",
        "   the model answered: none",
        "   tool calls run: none",
        "   dispatches: timed_out ×3; retried 2, stuck 0, fallbacks 0, timed out 3",
        '   first correction: "Your previous attempt failed (timed_out): no result within 0.05s"',
        "   items: accepted 0, escalated 1, failed 0",
        '   first escalation: "failure ladder exhausted (timed_out: no result within 0.05s)"',
        "",
    ]


def test_a_retry_that_stuck_detection_kept_from_running_is_not_counted(tmp_path: Path) -> None:
    # As SmolLM2 did through llama-server: a text answer twice, the same correction twice.
    text_only = (
        "\nimport dataclasses\nfrom pydantic_ai.messages import TextPart\n"
        "workflow = dataclasses.replace(\n"
        "    workflow, players={'researcher': lambda turn: TextPart('I am ready to assist.')}\n)\n"
    )
    (tmp_path / "qa_text.py").write_text(e2e_real.readme_example() + text_only, "utf-8")
    argv = ["run", "qa_text.py:workflow", "--input", e2e_real.README_INPUT]

    command = e2e_real.run_command("text", argv, tmp_path, tmp_path / "journal.db")

    assert e2e_real.problems(command) == []
    (run,) = _timeless(command, 0).runs
    assert run == RunFigures(
        run_id="run_0", workflow="qa", status="waiting",
        reason="phase 'research' (fail_fast): 0 of 1 items accepted, 1 escalated, waiting for a "
        "person",
        elapsed=0.0, requests=2, failed_requests=0, input_tokens=run.input_tokens,
        output_tokens=run.output_tokens, request_seconds=0.0, answers=Counter(text=2),
        outcomes=Counter(invalid=2), retries=1,
        first_correction="Your previous output was invalid:\n- (root): answered in text; call "
        "`final_result` with the output",
        first_invalid="no tool call in the answer: 'I am ready to assist.'", stuck=1,
        escalated=1,
        first_escalation="failure ladder exhausted (stuck: the same dispatch would repeat with "
        "no new information (invalid: no tool call in the answer: 'I am ready to assist.' - "
        "(root): answered in text; call `final_result` with the output))",
    )  # fmt: skip
    assert run.input_tokens > 0 and run.output_tokens > 0


@pytest.mark.anyio
async def test_a_run_left_running_a_crash_and_a_wrong_exit_code_are_problems(
    tmp_path: Path,
) -> None:
    from hubspoke.examples.sales import DEMO_INPUT, workflow

    store = SQLiteStore(tmp_path / "journal.db")
    at_contacts = kill_when(lambda e: e.kind is EventKind.PHASE_STARTED and e.phase == "contacts")
    with pytest.raises(Killed):
        await Foreman(workflow, store, listeners=[at_contacts]).run(DEMO_INPUT, run_id="r_cut")
    left_running = e2e_real.run_figures(store, "r_cut")
    store.close()
    assert (left_running.status, left_running.declared) == ("running", False)
    assert left_running.accepted == 2  # discovery and qualification, before the kill

    ended = dataclasses.replace(left_running, status="aborted")
    commands = [
        Command("cut", ["hubspoke", "demo", "sales"], 130, 1.0, runs=[left_running]),
        Command("crash", ["hubspoke", "run", "x.py:w"], 1, 1.0, stderr="Traceback (most "
                "recent call last):\n  ...\nRuntimeError: boom\n"),
        Command("lied", ["hubspoke", "demo", "sales"], 0, 1.0, runs=[ended]),
        Command("fine", ["hubspoke", "demo", "sales"], 1, 1.0, runs=[ended]),
    ]  # fmt: skip

    assert [e2e_real.problems(c) for c in commands] == [
        ["cut: run r_cut ended 'running', not declared"],
        ["crash: crashed with a traceback", "crash: exit code 1 and no run in the journal"],
        ["lied: exit code 0 for a run that ended 'aborted' (expected 1)"],
        [],
    ]
    assert e2e_real.exit_code(commands) == 1
    assert e2e_real.exit_code(commands[3:]) == 0
    report = e2e_real.render(commands)
    assert "   run r_cut (sales): running, NOT a declared state" in report
    assert "   PROBLEM: cut: run r_cut ended 'running', not declared" in report
    assert report.splitlines()[-5:] == [
        "command  exit  state     wall s  requests  tokens in/out  tools  invalid  retried"
        "  timed out",
        "cut      130   running   1.0     4         3,998/1,092    19     0        0        0",
        "crash    1     (no run)",
        "lied     0     aborted   1.0     4         3,998/1,092    19     0        0        0",
        "fine     1     aborted   1.0     4         3,998/1,092    19     0        0        0",
    ]


def test_the_configuration_the_runs_read_is_valid_and_prices_the_local_server() -> None:
    from hubspoke.models.config import Config

    config = Config.from_toml(e2e_real.config_file(256), environ={})
    assert config.settings["max_tokens"] == 256


def test_the_research_and_router_runs_end_in_declared_states_offline(tmp_path: Path) -> None:
    """The plan's research demo and the router guide's workflow with a model-played router: on
    the offline model (no player for the router) both end in a declared state the report reads."""
    db = tmp_path / "journal.db"
    router = e2e_real.router_example()
    assert "function=None" in router and "asyncio.run(" not in router
    (tmp_path / "router.py").write_text(router, encoding="utf-8")
    commands = [
        e2e_real.run_command("research", ["demo", "research", e2e_real.RESEARCH_QUESTION],
                             tmp_path, db),
        e2e_real.run_command("router", ["run", "router.py:workflow", "--input",
                                        e2e_real.ROUTER_INPUT], tmp_path, db),
    ]  # fmt: skip
    assert [p for c in commands for p in e2e_real.problems(c)] == []
    research, routed = (c.runs for c in commands)
    assert [(r.workflow, r.status) for r in research] == [("research", "completed")]
    assert research[0].accepted == 5 and research[0].tool_calls == Counter(search=1)
    # The offline model does not know how to route: it asks, is corrected, and the item waits.
    assert [(r.workflow, r.status) for r in routed] == [("routed", "waiting")]
    assert routed[0].requests >= 1 and routed[0].accepted == 0
