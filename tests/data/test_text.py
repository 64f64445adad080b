"""load_text_table on the real SMS spam collection and on small files the tests write."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

from shipyard.data.text import TextTable, load_text_table
from shipyard.errors import DataError

SMS = next((base / "data" / "sms_spam" / "SMSSpamCollection"
            for base in (SHARED, ROOT.parent.parent / "shared")
            if (base / "data" / "sms_spam" / "SMSSpamCollection").is_file()),
           SHARED / "data" / "sms_spam" / "SMSSpamCollection")


def _sms_lines() -> list[str]:
    lines = SMS.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5574, f"the SMS spam collection is missing or changed at {SMS}"
    return lines


def _error(path: Path, **kwargs: object) -> str:
    kwargs = {"text_column": 1, "label_column": 0, **kwargs}
    with pytest.raises(DataError) as caught:
        load_text_table(path, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_the_sms_collection_loads_exactly() -> None:
    table = load_text_table(SMS, text_column=1, label_column=0)
    assert isinstance(table, TextTable) and table.source == str(SMS.resolve())
    assert len(table.texts) == len(table.labels) == 5574 and table.dropped == 0
    assert Counter(table.labels) == {"ham": 4827, "spam": 747}
    expected = [line.split("\t", 1) for line in _sms_lines()]
    assert table.labels == [label for label, _ in expected]
    assert table.texts == [text for _, text in expected]
    quoted = [t for t in table.texts if t.startswith('"')]
    assert len(quoted) == 54  # quotes are ordinary characters in a tab file
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.dropped = 1  # type: ignore[misc]


def test_the_sms_collection_under_other_names(tmp_path: Path) -> None:
    for name in ("sms.tsv", "sms.txt", "SMS.TAB"):
        shutil.copy(SMS, tmp_path / name)
        table = load_text_table(tmp_path / name, text_column=1, label_column=0)
        assert len(table.texts) == 5574 and Counter(table.labels)["spam"] == 747, name
    # read as CSV, its unbalanced quotes are refused, with the fix
    message = _error(SMS, quoting="csv")
    assert message.startswith("data.quoting: cannot read the row that starts on line ")
    assert message.endswith("set data.quoting: none")


def test_a_header_is_detected_with_positions(tmp_path: Path) -> None:
    lines = _sms_lines()[:200]
    plain, headed = tmp_path / "plain", tmp_path / "headed"
    plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    headed.write_text("class\tmessage\n" + "\n".join(lines) + "\n", encoding="utf-8")
    without = load_text_table(plain, text_column=1, label_column=0)
    with_header = load_text_table(headed, text_column=1, label_column=0)
    assert with_header == dataclasses.replace(without, source=str(headed.resolve()))
    assert len(without.texts) == 200 and "class" not in with_header.labels
    forced = load_text_table(headed, text_column=1, label_column=0, header=False)
    assert forced.labels[0] == "class" and len(forced.texts) == 201
    by_name = load_text_table(headed, text_column="message", label_column="class")
    assert by_name.texts == without.texts


def test_quoted_csv_fields_hold_separators_newlines_and_quotes(tmp_path: Path) -> None:
    rows = [
        ["1", "Hello, world", "ham"],
        ["2", 'He said "WIN £100", call now!\nReply STOP, to end', "spam"],
        ["3", "multi\r\nline\n\nwith blank line", "ham"],
        ["4", "; | \t all separators", "spam"],
    ]
    path = tmp_path / "quoted.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label"])
        writer.writerows(rows)
    table = load_text_table(path, text_column="text", label_column="label")
    assert table.texts == [r[1] for r in rows] and table.labels == [r[2] for r in rows]
    again = load_text_table(path, text_column=1, label_column=2, header=True)
    assert again == table
    auto = load_text_table(path, text_column=1, label_column=2)  # "label" is unique: a header
    assert auto == table
    broken = tmp_path / "broken.csv"
    broken.write_text('label,text\nham,fine\nspam,"never closed\nham,next\n', encoding="utf-8")
    message = _error(broken, text_column="text", label_column="label")
    assert "line 3 of" in message and message.startswith("data.quoting: ")


def test_columns_by_name_need_a_header_and_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "named.csv"
    path.write_text("id,text,label\n1,hi,ham\n2,win,spam\n", encoding="utf-8")
    assert _error(path, text_column="message", label_column="label") == (
        f"data.text_column: no column 'message' in {str(path)!r}; the columns there are "
        "['id', 'text', 'label']: name one of them or give a 0-based position")
    assert _error(path, text_column="text", label_column="class").startswith(
        "data.label_column: no column 'class'")
    assert _error(path, text_column="text", label_column=2, header=False).startswith(
        "data.text_column: 'text' is a column name, which needs a header row, but "
        "data.header is false")
    assert _error(path, text_column=1, label_column=5).startswith(
        "data.label_column: position 5, but no row of")
    assert _error(path, text_column="text", label_column=5).startswith(
        "data.label_column: position 5, but the header of")
    assert _error(path, text_column=1, label_column="text").startswith(
        "data.label_column: is the same column as data.text_column")
    for bad in (-1, True, "", 1.5):
        assert _error(path, text_column=bad).startswith(
            "data.text_column: must be a column name or a 0-based position")
    doubled = tmp_path / "doubled.csv"
    doubled.write_text("text,text,label\na,b,ham\n", encoding="utf-8")
    assert "2 columns are named 'text'" in _error(doubled, text_column="text",
                                                  label_column="label")


def test_rows_without_text_or_label_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "gaps.tsv"
    path.write_text("label\ttext\nham\tok one\nspam\t\n\t no label\nham\t   \nham\n\n"
                    "  spam \tok two\n", encoding="utf-8")
    table = load_text_table(path, text_column="text", label_column="label")
    assert table.texts == ["ok one", "ok two"] and table.labels == ["ham", "spam"]
    assert table.dropped == 4  # the blank line is not a row
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    assert _error(empty).startswith("data.source: ")
    only_gaps = tmp_path / "gaps2.tsv"
    only_gaps.write_text("ham\t\nspam\t \n", encoding="utf-8")
    assert "2 rows dropped" in _error(only_gaps)
    assert _error(tmp_path / "missing.tsv").startswith("data.source: file ")


def test_a_tab_file_keeps_tabs_inside_its_last_column(tmp_path: Path) -> None:
    path = tmp_path / "tabs.tsv"
    path.write_text("ham\tone\ttwo\nspam\tthree\nham\tfour\t\tfive\n", encoding="utf-8")
    table = load_text_table(path, text_column=1, label_column=0)
    assert table.texts == ["one\ttwo", "three", "four\t\tfive"]
    three = tmp_path / "three.tsv"  # the text is not the last column: extra cells stay out
    three.write_text("ham\tone\tx\nspam\ttwo\ty\tz\nham\tthree\tw\n", encoding="utf-8")
    assert load_text_table(three, text_column=1, label_column=0).texts == ["one", "two", "three"]
    headed = tmp_path / "headed.tsv"
    headed.write_text("label\ttext\nham\tone\ttwo\nspam\tthree\nham\tfour\n", encoding="utf-8")
    assert load_text_table(headed, text_column="text", label_column="label").texts == \
        ["one\ttwo", "three", "four"]


def test_the_separator_by_extension_sniffing_or_as_given(tmp_path: Path) -> None:
    rows = ["label;text", "ham;see you at 5, ok?", "spam;WIN, WIN, WIN now", "ham;fine, thanks"]
    semi = tmp_path / "semicolons"
    semi.write_text("\n".join(rows) + "\n", encoding="utf-8")
    table = load_text_table(semi, text_column="text", label_column="label")
    assert table.texts == ["see you at 5, ok?", "WIN, WIN, WIN now", "fine, thanks"]
    tabbed = tmp_path / "tabbed.csv"  # the extension says comma; data.sep says otherwise
    tabbed.write_text("label\ttext\nham\ta, b\n", encoding="utf-8")
    assert load_text_table(tabbed, text_column=1, label_column=0, sep="\\t").texts == \
        ["text", "a, b"]  # one data row: no label repeats, so no header is detected
    assert load_text_table(tabbed, text_column=1, label_column=0, sep="\t",
                           header=True).texts == ["a, b"]
    assert _error(tabbed, sep=",,").startswith("data.sep: must be one character")
    words = tmp_path / "words"
    words.write_text("hello\nworld\nagain\n", encoding="utf-8")
    assert _error(words).startswith("data.sep: cannot tell the separator of ")


def test_encodings_named_detected_and_refused(tmp_path: Path) -> None:
    texts = ["Café crème for £5 \u2013 très bon", "WIN €1000 “now”, naïve déjà vu", "plain ascii"]
    content = "label\ttext\n" + "".join(f"ham\t{t}\n" for t in texts)
    legacy = tmp_path / "cp1252.tsv"
    legacy.write_bytes(content.encode("cp1252"))
    raw = legacy.read_bytes()
    first_bad = next(i for i, b in enumerate(raw) if b >= 0x80)
    assert _error(legacy, text_column="text", label_column="label") == (
        f"data.encoding: {str(legacy.resolve())!r} is not valid utf-8 (invalid continuation "
        f"byte at byte {first_bad}, line 2); set data.encoding to the file's encoding "
        "(for example cp1252 or latin-1) or auto")
    table = load_text_table(legacy, text_column="text", label_column="label",
                            encoding="cp1252")
    assert table.texts == texts
    latin = tmp_path / "latin1.tsv"
    latin.write_bytes(content.replace("\u2013", "-").replace("€", "E").replace("“", '"')
                      .replace("”", '"').encode("latin-1"))
    assert load_text_table(latin, text_column=1, label_column=0,
                           encoding="latin-1").texts[0] == "Café crème for £5 - très bon"
    guessed = load_text_table(legacy, text_column=1, label_column=0, encoding="auto")
    assert guessed.texts[2] == "plain ascii" and len(guessed.texts) == 3  # a guess: see doc
    for encoding in ("utf-16", "utf-8-sig"):
        path = tmp_path / f"{encoding}.tsv"
        path.write_bytes(content.encode(encoding))
        table = load_text_table(path, text_column="text", label_column="label",
                                encoding="auto")
        assert table.texts == texts, encoding
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(content.encode("utf-8-sig"))  # the BOM is not part of the first name
    assert load_text_table(bom, text_column="text", label_column="label").texts == texts
    assert _error(legacy, encoding="klingon").startswith(
        "data.encoding: unknown encoding 'klingon'; give a Python codec name")
