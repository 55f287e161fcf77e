"""The output-path rules on their own: what charrnn refuses to write over, and why."""

import os
import stat

import pytest

from charrnn.errors import UsageError, speaking_in_flags
from charrnn.output_guard import check_output, is_corpus_file, not_a_file


def test_only_a_regular_file_may_be_written_over(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert not_a_file(stat.S_IFREG | 0o644) is None
    assert not_a_file(os.stat(tmp_path).st_mode) == "it is a directory"
    assert not_a_file(os.stat(fifo).st_mode) == "not a regular file (a device, a pipe or a socket)"
    assert not_a_file(os.stat("/dev/null").st_mode).startswith("not a regular file")


def test_a_corpus_file_is_found_by_inode_through_a_link_and_on_stdin(tmp_path, monkeypatch):
    text, other = tmp_path / "a.txt", tmp_path / "b.txt"
    text.write_text("abc")
    other.write_text("abc")
    (tmp_path / "link.txt").symlink_to(text)
    assert is_corpus_file(tmp_path / "link.txt", [text])
    assert not is_corpus_file(other, [text])
    assert not is_corpus_file(tmp_path / "new.npz", [text])  # nothing reads a new file
    with open(text, "rb") as f:
        monkeypatch.setattr("sys.stdin", f)
        assert is_corpus_file(text, ["-"]) and not is_corpus_file(other, ["-"])


@pytest.mark.parametrize("setup, options, message", [
    (lambda p: p.write_bytes(b"x"), {}, "already exists; pass resume=True to continue training "
                                        "it or force=True to overwrite it"),
    (lambda p: None, {"resume": True}, "cannot resume: .* does not exist"),
    (lambda p: p.write_bytes(b"x"), {"resume": True, "force": True},
     "resume=True continues a model and force=True starts a new one"),
    (lambda p: p.mkdir(), {"force": True}, "it is a directory"),
    (lambda p: os.mkfifo(p), {"force": True}, "not a regular file"),
])
def test_refusals_are_usage_errors(tmp_path, setup, options, message):
    path = tmp_path / "m.npz"
    setup(path)
    with pytest.raises(UsageError, match=message) as e:
        check_output(path, resume=options.get("resume", False), force=options.get("force", False))
    assert e.value.exit_code == 2


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(UsageError, match=r"cannot write .*m\.npz: .*nowhere does not exist"):
        check_output(tmp_path / "nowhere" / "m.npz", resume=False, force=False)
    check_output(tmp_path / "m.npz", resume=False, force=False)  # a new file in a folder: fine


def test_the_command_line_names_the_flags(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"already exists; pass --resume to continue training "
                                         r"it or --force to overwrite it$"), speaking_in_flags():
        check_output(path, resume=False, force=False)


def test_a_file_of_the_corpus_is_never_the_output_even_with_force(tmp_path, monkeypatch):
    text, other = tmp_path / "a.txt", tmp_path / "b.txt"
    text.write_text("abc")
    (tmp_path / "link.npz").symlink_to(text)
    for target in (text, tmp_path / "link.npz"):
        for options in ({"force": True}, {"resume": True}, {}):
            with pytest.raises(UsageError, match=r"^cannot write .*: it is a file of the corpus; "
                                                 r"choose another output$"):
                check_output(target, sources=[other, text], resume=options.get("resume", False),
                             force=options.get("force", False))
    assert text.read_text() == "abc"
    check_output(other, sources=[text], resume=False, force=True)  # another file: as before
    with open(text, "rb") as f:  # the corpus on standard input
        monkeypatch.setattr("sys.stdin", f)
        with pytest.raises(UsageError, match="it is a file of the corpus"):
            check_output(text, sources=["-"], resume=False, force=True)
    with pytest.raises(UsageError, match=r"corpus; choose another -o/--output$"), \
            speaking_in_flags():
        check_output(text, sources=[text], resume=False, force=True)
