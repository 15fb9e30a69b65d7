"""The declarative reader: a dataclass is the whole declaration of a
document's keys, types, defaults and limits, and every problem names its key."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pytest

from scanner.core.reading import above, read, read_given, rule, within
from scanner.errors import MalformedError


class Way(StrEnum):
    IN = "in"
    OUT = "out"


@dataclass(frozen=True)
class Door:
    pin: int = field(default=17, metadata=rule(within(0, 27, "a BCM pin number")))
    hold: float = field(default=3.0, metadata=rule(above(0), expect="seconds"))
    way: Way = Way.IN
    log: Path | None = Path("/var/log/door")
    fonts: tuple[Path, ...] = field(default=(), metadata=rule(expect="a list of font paths"))
    secret: str = field(default="", metadata=rule(key=False))


@dataclass(frozen=True)
class Beat:
    gate: str
    seen: int | None = field(metadata=rule(within(0, 9, "a count")))
    door: Door


def test_what_a_document_leaves_out_keeps_the_dataclass_default():
    assert read(Door, {}, "door") == Door()


def test_values_are_converted_to_the_declared_types():
    door = read(Door, {"hold": 2, "way": "out", "log": "", "fonts": ["a.ttf"]}, "door")
    assert door == Door(hold=2.0, way=Way.OUT, log=None, fonts=(Path("a.ttf"),))
    assert isinstance(door.hold, float)


def test_an_unknown_key_is_refused_with_the_keys_that_are_known():
    with pytest.raises(MalformedError) as err:
        read(Door, {"holdd": 2}, "door")
    assert str(err.value) == "door.holdd: unknown key (known: fonts, hold, log, pin, way)"


def test_a_field_that_is_no_key_cannot_be_set_from_a_document():
    with pytest.raises(MalformedError, match=r"door\.secret: unknown key"):
        read(Door, {"secret": "x"}, "door")


def test_a_limit_names_the_key_path_and_what_is_allowed():
    with pytest.raises(MalformedError) as err:
        read(Door, {"pin": 40}, "gpio")
    assert str(err.value) == "gpio.pin: 40 is not a BCM pin number (0 to 27)"


def test_a_wrong_type_says_what_was_expected_and_what_came():
    with pytest.raises(MalformedError) as err:
        read(Door, {"hold": "long", "pin": True}, "door")
    assert str(err.value) == (
        "door.pin: expected int, got True; door.hold: expected seconds, got 'long'"
    )


def test_an_enum_names_its_values():
    with pytest.raises(MalformedError, match=r"^way: 'sideways' is not in or out$"):
        read(Door, {"way": "sideways"})


def test_a_list_names_what_it_should_hold():
    with pytest.raises(MalformedError) as err:
        read(Door, {"fonts": [""]}, "door")
    assert str(err.value) == "door.fonts: expected a list of font paths, got ['']"


def test_a_path_that_must_be_there_cannot_be_empty():
    @dataclass(frozen=True)
    class Files:
        db: Path = Path("/x")

    with pytest.raises(MalformedError, match=r"^files\.db: empty path$"):
        read(Files, {"db": ""}, "files")


def test_a_field_without_a_default_must_be_given_and_null_only_where_declared():
    with pytest.raises(MalformedError) as err:
        read(Beat, {"gate": None, "seen": None})
    assert str(err.value) == "door: missing, and required; gate: expected str, got None"
    beat = read(Beat, {"gate": "a", "seen": None, "door": {"pin": 5}})
    assert beat == Beat("a", None, Door(pin=5))


def test_a_nested_table_names_the_whole_path():
    with pytest.raises(MalformedError, match=r"^door\.way: 'up' is not in or out$"):
        read(Beat, {"gate": "a", "seen": 1, "door": {"way": "up"}})


def test_read_given_returns_only_the_keys_given_among_those_allowed():
    assert read_given(Door, {"pin": 5}, keys=("pin", "way")) == {"pin": 5}
    with pytest.raises(MalformedError, match=r"^hold: unknown key \(known: pin, way\)$"):
        read_given(Door, {"hold": 1}, keys=("pin", "way"))


def test_a_hostile_value_is_quoted_short():
    with pytest.raises(MalformedError) as err:
        read(Door, {"pin": "x" * 5000})
    assert len(str(err.value)) < 120


@dataclass(frozen=True)
class Passage:
    from_: str = field(metadata=rule(expect="a zone"))
    to: str = "hall"
    zones: tuple[str, ...] = field(
        default=(), metadata=rule(expect="a list of zones", itemwise=True)
    )


def test_a_keyword_key_is_read_into_its_field_with_a_trailing_underscore():
    assert read(Passage, {"from": "yard"}) == Passage(from_="yard")
    with pytest.raises(MalformedError, match=r"^from_: unknown key \(known: from, to, zones\)"):
        read(Passage, {"from": "yard", "from_": "x"})


def test_a_missing_field_says_what_to_give_when_its_rule_expects_something():
    with pytest.raises(MalformedError) as err:
        read(Passage, {}, "doors.a")
    assert str(err.value) == "doors.a.from: missing, and required: a zone"


def test_an_itemwise_list_names_the_list_when_it_is_none_and_the_item_when_one_is_wrong():
    with pytest.raises(MalformedError) as err:
        read(Passage, {"from": "yard", "zones": "hall"})
    assert str(err.value) == "zones: expected a list of zones, got 'hall'"
    with pytest.raises(MalformedError) as err:
        read(Passage, {"from": "yard", "zones": ["hall", 3]})
    assert str(err.value) == "zones[1]: expected str, got 3"


@dataclass(frozen=True)
class Stage:
    zones: tuple[str, ...] = field(
        default=(), metadata=rule(expect="a list of zones", itemwise=True, item="a zone id")
    )


def test_a_list_item_of_the_wrong_type_says_what_an_item_should_be():
    with pytest.raises(MalformedError) as err:
        read(Stage, {"zones": ["hall", 3]}, "tiers.crew")
    assert str(err.value) == "tiers.crew.zones[1]: expected a zone id, got 3"


def test_a_table_that_is_no_table_says_what_it_should_hold():
    with pytest.raises(MalformedError) as err:
        read(Passage, 3, "doors.side", table="a table with from and to")
    assert str(err.value) == "doors.side: expected a table with from and to, got 3"
