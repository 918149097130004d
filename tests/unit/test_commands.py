"""The staff command grammar: every command valid and malformed, the top-block rule, and permissions."""

from __future__ import annotations

from datetime import date, time

import pytest

from mailbot.domain.commands import (
    COMMAND_REFERENCE,
    COMMANDS,
    ROLES_ALLOWED,
    STAFF_ROLES,
    AgreementText,
    Arguments,
    CaseRef,
    Category,
    Command,
    ContactMode,
    Email,
    Extension,
    Mentor,
    NoArgs,
    NotAComplaint,
    OnBehalf,
    Outcome,
    PhoneHours,
    Reason,
    RestrictionTerms,
    Suspension,
    SuspensionDecision,
    check_permission,
    parse_commands,
    parse_on_behalf,
)


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        ("#note", "note", NoArgs()),
        ("#full", "full", NoArgs()),
        ("#assign Sam.Jones@1mm.org.uk", "assign", Email("sam.jones@1mm.org.uk")),
        ("#assign <sam@1mm.org.uk>", "assign", Email("sam@1mm.org.uk")),
        ("#category fundraising", "category", Category("fundraising")),
        ("#category data-protection", "category", Category("data_protection")),
        ("#category Mentor_Behaviour", "category", Category("mentor_behaviour")),
        ("#category service", "category", Category("service")),
        ("#category safeguarding", "category", Category("safeguarding")),
        (
            "#extend 2026-04-30 waiting for the mentor's statement",
            "extend",
            Extension(date(2026, 4, 30), "waiting for the mentor's statement"),
        ),
        ("#resolve upheld", "resolve", Outcome("upheld")),
        ("#resolve partly_upheld", "resolve", Outcome("partly-upheld")),
        ("#resolve not-upheld", "resolve", Outcome("not-upheld")),
        ("#resolve limited-disclosure", "resolve", Outcome("limited-disclosure")),
        ("#escalate", "escalate", NoArgs()),
        ("#stay", "stay", NoArgs()),
        ("#reopen", "reopen", NoArgs()),
        ("#merge 1mm-2026-0007", "merge", CaseRef("1MM-2026-0007")),
        ("#merge [1MM-2026-10007]", "merge", CaseRef("1MM-2026-10007")),
        ("#safeguarding", "safeguarding", NoArgs()),
        ("#not-a-complaint", "not-a-complaint", NotAComplaint(False)),
        ("#not_a_complaint", "not-a-complaint", NotAComplaint(False)),
        ("#not-a-complaint spam", "not-a-complaint", NotAComplaint(True)),
        ("#resolve outside-remit", "resolve", Outcome("outside-remit")),
        ("#informal-warning", "informal-warning", Mentor(None)),
        ("#informal-warning Dan@Example.com", "informal-warning", Mentor("dan@example.com")),
        ("#formal-warning", "formal-warning", Mentor(None)),
        ("#suspend allegation of bullying at the session", "suspend",
         Suspension(None, "allegation of bullying at the session")),
        ("#suspend dan@example.com theft at the event", "suspend", Suspension("dan@example.com", "theft at the event")),
        ("#mentor-meeting dan@example.com", "mentor-meeting", Mentor("dan@example.com")),
        ("#mentor-excluded he left", "mentor-excluded", Suspension(None, "he left")),
        ("#suspension-decision upheld he admitted it", "suspension-decision", SuspensionDecision(True, "he admitted it")),
        ("#suspension-decision not_upheld", "suspension-decision", SuspensionDecision(False, "")),
        ("#warn twenty emails a day to coordinators", "warn", Reason("twenty emails a day to coordinators")),
        (
            "#restrict acknowledge-only for 6 months because abusive calls to staff",
            "restrict",
            RestrictionTerms("acknowledge-only", 6, "abusive calls to staff", None),
        ),
        (
            "#restrict silent for 1 month because threats exceptional: threats to a volunteer, no prior warning",
            "restrict",
            RestrictionTerms("silent", 1, "threats", "threats to a volunteer, no prior warning"),
        ),
        ("#named-contact Pat@1mm.org.uk", "named-contact", Email("pat@1mm.org.uk")),
        ("#letters-only", "letters-only", NoArgs()),
        (
            "#phone Tue,Thu 10:00-12:00",
            "phone",
            PhoneHours(("Tue", "Thu"), time(10, 0), time(12, 0)),
        ),
        ("#phone monday 9:30-11:00", "phone", PhoneHours(("Mon",), time(9, 30), time(11, 0))),
        ("#agreement", "agreement", AgreementText(None)),
        ("#agreement one email a week to Pat", "agreement", AgreementText("one email a week to Pat")),
        ("#lift behaviour has improved", "lift", Reason("behaviour has improved")),
        ("#terminate acknowledge-only", "terminate", ContactMode("acknowledge-only")),
        ("#terminate silent", "terminate", ContactMode("silent")),
        ("#fresh-evidence", "fresh-evidence", NoArgs()),
        ("#NOTE", "note", NoArgs()),
        ("# note", "note", NoArgs()),
        ("  #escalate  ", "escalate", NoArgs()),
    ],
)
def test_valid_commands(line: str, name: str, args: Arguments) -> None:
    parsed = parse_commands(line + "\n\nBody text.")
    assert parsed.errors == ()
    assert parsed.commands == (Command(name=name, args=args, line=line.strip()),)
    assert parsed.body == "Body text."


@pytest.mark.parametrize(
    ("line", "explains"),
    [
        ("#note please call her", "takes nothing after the command"),
        ("#full history", "takes nothing after the command"),
        ("#assign", "an email address is required"),
        ("#assign sam", "not 'sam'"),
        ("#assign sam@1mm.org.uk pat@1mm.org.uk", "one email address"),
        ("#category", "it needs one of"),
        ("#category complaints", "'complaints' is not one of"),
        ("#extend", "a new date and a reason are required"),
        ("#extend 30/04/2026 statement", "YYYY-MM-DD"),
        ("#extend 2026-02-30 statement", "not a real date"),
        ("#extend 2026-04-30", "a reason is required"),
        ("#resolve", "it needs one of"),
        ("#resolve partly", "'partly' is not one of"),
        ("#escalate now", "takes nothing"),
        ("#stay please", "takes nothing"),
        ("#reopen 1MM-2026-0001", "takes nothing"),
        ("#merge", "a case reference is required"),
        ("#merge 2026-0007", "like 1MM-2026-0042"),
        ("#safeguarding yes", "takes nothing"),
        ("#not-a-complaint really", "is not 'spam'"),
        ("#informal-warning x", "needs one email address"),
        ("#formal-warning x", "needs one email address"),
        ("#suspend dan@example.com", "a reason is required"),
        ("#suspend", "a reason is required"),
        ("#warn", "a reason is required"),
        ("#restrict", "a contact mode, a number of months"),
        ("#restrict silent for 6 months", "a contact mode, a number of months and a 'because'"),
        ("#restrict silent for six months because abuse", "whole number above 0"),
        ("#restrict silent for 0 months because abuse", "whole number above 0"),
        ("#restrict quiet for 6 months because abuse", "'quiet' is not one of"),
        ("#restrict silent for 6 months because", "a reason is required after 'because'"),
        ("#restrict silent for 6 months because abuse exceptional:", "'exceptional:' must be followed"),
        ("#named-contact", "an email address is required"),
        ("#letters-only please", "takes nothing"),
        ("#phone", "needs days and a time range"),
        ("#phone Tue,Thu", "needs days and a time range"),
        ("#phone Tue,Funday 10:00-12:00", "'Funday' is not a day"),
        ("#phone Tue 10-12", "like 10:00-12:00"),
        ("#phone Tue 12:00-10:00", "start time must be before"),
        ("#phone Tue 25:00-26:00", "not a real time range"),
        ("#lift", "a reason is required"),
        ("#terminate", "it needs one of"),
        ("#terminate forever", "'forever' is not one of"),
        ("#fresh-evidence attached", "takes nothing"),
    ],
)
def test_malformed_commands_explain_the_problem_and_the_usage(line: str, explains: str) -> None:
    parsed = parse_commands(line + "\nBody")
    assert parsed.commands == ()
    assert len(parsed.errors) == 1
    error = parsed.errors[0]
    assert error.line == line
    assert explains in error.message
    name = line.split()[0].lstrip("#").replace("_", "-")
    assert error.message.endswith("Write it as: " + COMMANDS[name].usage)
    assert parsed.body == "Body"


def test_unknown_command_lists_the_commands() -> None:
    parsed = parse_commands("#foo\nHello")
    assert parsed.commands == ()
    assert parsed.errors[0].line == "#foo"
    assert parsed.errors[0].message.startswith("unknown command #foo; the commands are: #note, #full, #assign")
    assert "#fresh-evidence" in parsed.errors[0].message


@pytest.mark.parametrize(
    ("text", "names", "error_count", "body"),
    [
        ("#assign sam@1mm.org.uk\n#category service\n\nDear Jane,\nThanks.", ("assign", "category"), 0, "Dear Jane,\nThanks."),
        ("\n\n#note\n\n#full\n\n\nInternal: called her.", ("note", "full"), 0, "Internal: called her."),
        ("#note\n#bogus\n#escalate\nText", ("note", "escalate"), 1, "Text"),
        ("Dear Jane,\n#resolve upheld", (), 0, "Dear Jane,\n#resolve upheld"),
        ("#1 priority is her safety.\n#note", (), 0, "#1 priority is her safety.\n#note"),
        ("# Summary of the call\nShe was upset.", (), 0, "# Summary of the call\nShe was upset."),
        ("#escalate\nBody\n\n#resolve upheld\n## Heading", ("escalate",), 0, "Body\n\n#resolve upheld\n## Heading"),
        ("#escalate\r\n\r\nBody\r\n", ("escalate",), 0, "Body"),
        ("Just a reply, no commands.", (), 0, "Just a reply, no commands."),
        ("#full", ("full",), 0, ""),
        ("", (), 0, ""),
    ],
)
def test_only_the_top_block_holds_commands(text: str, names: tuple[str, ...], error_count: int, body: str) -> None:
    parsed = parse_commands(text)
    assert tuple(command.name for command in parsed.commands) == names
    assert len(parsed.errors) == error_count
    assert parsed.body == body


@pytest.mark.parametrize(
    ("line", "roles", "refused"),
    [
        ("#note", frozenset({"coordinator"}), False),
        ("#resolve upheld", frozenset({"complaints_team"}), False),
        ("#suspend bullying", frozenset({"regional_manager"}), False),
        ("#warn persistent calls", frozenset({"coordinator"}), True),
        ("#warn persistent calls", frozenset({"smt"}), False),
        ("#warn persistent calls", frozenset({"ceo"}), False),
        ("#restrict silent for 6 months because abuse", frozenset({"smt"}), True),
        ("#restrict silent for 6 months because abuse", frozenset({"ceo"}), False),
        ("#restrict silent for 6 months because abuse", frozenset({"smt", "ceo"}), False),
        ("#lift improved", frozenset({"head_of_delivery", "smt"}), True),
        ("#lift improved", frozenset({"ceo"}), False),
        ("#terminate silent", frozenset({"safeguarding_lead"}), True),
        ("#terminate silent", frozenset({"ceo"}), False),
        ("#note", frozenset(), True),
        ("#note", frozenset({"mentor"}), True),
    ],
)
def test_check_permission(line: str, roles: frozenset[str], refused: bool) -> None:
    command = parse_commands(line).commands[0]
    message = check_permission(command, roles)
    assert (message is not None) is refused
    if message is not None:
        assert message.startswith(f"#{command.name}")


def test_refusal_names_the_roles_needed() -> None:
    command = parse_commands("#restrict silent for 6 months because abuse").commands[0]
    message = check_permission(command, frozenset({"smt"}))
    assert message is not None and "ceo" in message and "smt" in message


def test_roles_table_matches_the_procedure() -> None:
    # The CEO decides restrictions and their contact options; SMT or the CEO give the prior warning; the
    # Regional Manager and the Senior Management Team decide a mentor's suspension or exclusion; everything
    # else is any staff member.
    restricted = {name: roles for name, roles in ROLES_ALLOWED.items() if roles is not None}
    ceo = frozenset({"ceo"})
    assert restricted == {
        "warn": frozenset({"smt", "ceo"}),
        "restrict": ceo,
        "lift": ceo,
        "terminate": ceo,
        "named-contact": ceo,
        "letters-only": ceo,
        "phone": ceo,
        "agreement": ceo,
        "suspension-decision": frozenset({"regional_manager", "head_of_delivery", "smt", "ceo"}),
        "mentor-excluded": frozenset({"regional_manager", "head_of_delivery", "smt", "ceo"}),
    }
    assert all(roles <= STAFF_ROLES for roles in restricted.values())


def test_command_reference_has_one_line_per_command_with_its_usage() -> None:
    lines = COMMAND_REFERENCE.splitlines()
    assert len(lines) == len(COMMANDS)
    for line, spec in zip(lines, COMMANDS.values()):
        assert line.startswith(spec.usage)


def test_every_command_in_the_grammar_has_exactly_one_handler() -> None:
    from mailbot.domain.commands import COMMANDS
    from mailbot.services.staff_commands import HANDLERS

    assert set(HANDLERS) == set(COMMANDS)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("#on-behalf-of Pat Smith <pat@example.com>", OnBehalf("Pat Smith", "pat@example.com", "phone")),
        ("#on-behalf-of Pat Smith <PAT@Example.com> in-person", OnBehalf("Pat Smith", "pat@example.com", "in-person")),
        ("#On-Behalf-Of pat@example.com post", OnBehalf("", "pat@example.com", "post")),
        ('#on-behalf-of "Smith, Pat" <pat@example.com>', OnBehalf("Smith, Pat", "pat@example.com", "phone")),
        ("#on-behalf-of Pat Smith, 12 High Street, Leeds LS1 1AA post",
         OnBehalf("Pat Smith", "", "post", "12 High Street, Leeds LS1 1AA")),
    ],
)
def test_on_behalf_of(line: str, expected: OnBehalf) -> None:
    assert parse_on_behalf(line) == expected


@pytest.mark.parametrize("line", ["#on-behalf-of", "#on-behalf-of Pat Smith", "#on-behalf-of Pat Smith phone"])
def test_on_behalf_of_without_an_address_says_how_to_write_it(line: str) -> None:
    with pytest.raises(ValueError, match="needs the person's email address, or their name and postal address"):
        parse_on_behalf(line)

