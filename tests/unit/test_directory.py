"""The staff and participant directories: strict parsing with the file and line, and who handles whom."""

from __future__ import annotations

import pytest

from mailbot.domain.directory import (
    Directory,
    DirectoryError,
    assigned_contact,
    choose_procedure,
    manager_of,
    parse_participants,
    parse_staff,
)

STAFF = """
[[staff]]
name = "Team"
email = "team@1mm.org.uk"
roles = ["complaints_team"]

[[staff]]
name = "Coord"
email = "coord@1mm.org.uk"
roles = ["coordinator"]
region = "London"

[[staff]]
name = "RM London"
email = "rm@1mm.org.uk"
roles = ["regional_manager"]
region = "London"

[[staff]]
name = "Head"
email = "head@1mm.org.uk"
roles = ["head_of_delivery"]

[[staff]]
name = "CEO"
email = "ceo@1mm.org.uk"
roles = ["ceo", "smt"]
"""
PEOPLE = """email,name,role,status,region,coordinator_email
mentee@example.org,Mentee,mentee,current,London,coord@1mm.org.uk
alum@example.org,Alum,mentee,alumni,London,
far@example.org,Far,mentee,alumni,Cornwall,
mentor@example.org,Mentor,mentor,current,London,coord@1mm.org.uk
"""
DIRECTORY = Directory(parse_staff(STAFF), parse_participants(PEOPLE))


@pytest.mark.parametrize(
    "email, procedure, contact",
    [
        ("Mentee@Example.org", "mentee", "coord@1mm.org.uk"),
        ("alum@example.org", "mentee", "rm@1mm.org.uk"),
        ("far@example.org", "mentee", "head@1mm.org.uk"),
        ("mentor@example.org", "mentor", "coord@1mm.org.uk"),
        ("public@example.com", "external", "team@1mm.org.uk"),
        ("coord@1mm.org.uk", "staff", "team@1mm.org.uk"),
    ],
)
def test_procedure_and_contact(email: str, procedure: str, contact: str) -> None:
    assert choose_procedure(DIRECTORY, email.lower()) == procedure
    assert assigned_contact(DIRECTORY, email.lower()) == contact


@pytest.mark.parametrize(
    "assignee, manager",
    [("coord@1mm.org.uk", "rm@1mm.org.uk"), ("rm@1mm.org.uk", "head@1mm.org.uk"),
     ("team@1mm.org.uk", "head@1mm.org.uk"), ("head@1mm.org.uk", "ceo@1mm.org.uk"), ("ceo@1mm.org.uk", None)],
)
def test_overdue_alerts_go_one_step_up(assignee: str, manager: str | None) -> None:
    found = manager_of(DIRECTORY, assignee)
    assert (found.email if found else None) == manager


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[staff]]\nname = "A"\nemail = "a@x.org"\nroles = ["boss"]\n', "line 1: unknown role 'boss'"),
        ('[[staff]]\nname = "A"\nemail = "not-an-email"\n', "line 1: 'email' must be an email address"),
        ('\n\n[[staff]]\nname = "A"\nemail = "a@x.org"\n[[staff]]\nname = "B"\nemail = "A@x.org"\n',
         "line 6: a@x.org is listed twice"),
        ("[[staff]\n", "staff.toml"),
    ],
)
def test_a_bad_staff_file_names_the_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_staff(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("email,name\n", "line 1: the header must be"),
        ("email,name,role,status,region,coordinator_email\nx@y.org,X,volunteer,current,,\n",
         "line 2: role must be mentee or mentor"),
        ("email,name,role,status,region,coordinator_email\nx@y.org,X,mentee,former,,\n",
         "line 2: status must be current or alumni"),
        ("email,name,role,status,region,coordinator_email\nx@y.org,X,mentee\n", "line 2: expected 6 fields, found 3"),
    ],
)
def test_a_bad_participants_file_names_the_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=message):
        parse_participants(text)


def test_a_steady_directory_is_the_one_of_its_start_on_its_thread_only(tmp_path) -> None:
    """Intake holds the directory steady for a transaction: an edit made meanwhile reaches the next one, and any
    other thread at once."""
    import os
    import threading

    from mailbot.data_files import DirectoryFiles

    staff = tmp_path / "staff.toml"
    staff.write_text(STAFF)
    files = DirectoryFiles(tmp_path)
    with files.steady():
        assert files.get().staff_member("coord@1mm.org.uk") is not None
        staff.write_text(STAFF.replace("coord@1mm.org.uk", "new.coord@1mm.org.uk"))
        os.utime(staff, ns=(1, 1))  # a different modification time, however fast the file system's clock
        with files.steady():  # nested: still the outer one's
            assert files.get().staff_member("coord@1mm.org.uk") is not None
        elsewhere: list[bool] = []
        other = threading.Thread(target=lambda: elsewhere.append(files.get().staff_member("coord@1mm.org.uk")
                                                                 is None))
        other.start()
        other.join()
        assert elsewhere == [True]
        assert files.get().staff_member("coord@1mm.org.uk") is not None
    assert files.get().staff_member("coord@1mm.org.uk") is None
    assert files.get().staff_member("new.coord@1mm.org.uk") is not None
