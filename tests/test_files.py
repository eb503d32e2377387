"""Writing reports: atomically into regular files, through symlinks, into devices and pipes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import TINY, assert_exit, assert_usage_error, runner

from bce_audit.cli import main
from bce_audit.errors import UsageError
from bce_audit.files import Output, atomic_write, check_writable


def test_symlinked_report_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "run1.csv").write_text("old")
    link = tmp_path / "latest.csv"
    link.symlink_to("run1.csv")
    result = runner().invoke(main, ["sweep", *TINY, "--csv", str(link)])
    assert_exit(result, 0)
    assert link.is_symlink()
    assert (tmp_path / "run1.csv").read_text().startswith("formulation,domain,")


def test_existing_file_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("x")
    old.chmod(0o640)
    atomic_write(old, "y")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.txt", "z")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    check_writable(Output("--csv", fifo))
    atomic_write(fifo, "a,b\n1,2\n")
    reader.join(timeout=10)
    assert got == ["a,b\n1,2\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_file_where_the_directory_should_be_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is not a directory"):
        check_writable(Output("--csv", tmp_path / "file" / "x.csv"))


def test_closed_stdout_does_not_change_the_exit_code(tmp_path):
    # `bce-audit sweep | head -1`: the reader goes away; the run still ends normally
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", CI="1")
    csv = tmp_path / "out.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bce_audit", "sweep", *TINY, "--csv", str(csv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # before it writes anything: every write meets a closed pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode() and "Exception ignored" not in err.decode()
    assert Path(csv).read_text().startswith("formulation,")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_two_outputs_may_both_go_to_one_device_or_pipe(tmp_path):
    # (a FIFO stands in for /dev/null or /dev/stdout, which a test must not risk replacing)
    from bce_audit.files import check_distinct

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    check_distinct([Output("--csv", fifo), Output("--json", fifo)])
    with pytest.raises(UsageError, match="same file"):
        check_distinct([Output("--csv", tmp_path / "a"), Output("--json", tmp_path / "a")])


def test_a_directory_output_is_created_and_its_files_written_together(tmp_path):
    from bce_audit.errors import OutputsNotWritten
    from bce_audit.files import OutputDir, check_writable_dir, write_outputs

    out = OutputDir.parse("--repro", tmp_path / "new")
    check_writable_dir(out)  # missing, with a parent: fine
    write_outputs([(out.file("a.py"), "a"), (out.file("b.py"), b"b")])
    assert sorted(os.listdir(tmp_path / "new")) == ["a.py", "b.py"]
    assert (tmp_path / "new" / "b.py").read_bytes() == b"b"
    # a second directory that cannot be made: nothing is written, and the first is not left behind
    first, second = OutputDir("--repro", tmp_path / "first"), OutputDir("--plot", tmp_path / "no" / "such")
    with pytest.raises(OutputsNotWritten, match="nothing was written"):
        write_outputs([(first.file("a.py"), "a"), (second.file("b.png"), b"b")])
    assert not (tmp_path / "first").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        check_writable_dir(OutputDir("--plot", tmp_path / "file"))
    with pytest.raises(UsageError, match="standard output"):
        OutputDir.parse("--plot", "-")


# --------------------------------------------------------------------------- every output, checked before any work

# every output of sweep and of check, as (command, option, file or directory)
FILE_OUTPUTS = [("sweep", o) for o in ("--csv", "--details", "--json", "--failures")]
FILE_OUTPUTS += [("check", o) for o in ("--csv", "--junit", "--markdown", "--baseline")]
DIR_OUTPUTS = [("sweep", "--repro"), ("sweep", "--plot")]


def _args(command: str, option: str, path: Path | str) -> list[str]:
    args = [command, *TINY, option, str(path)]
    if option == "--baseline":
        args.append("--update-baseline")  # the baseline is an output only then
    elif command == "check":
        args += ["--baseline", os.devnull]  # something to check against; never read here
    return args


def _refused_before_the_run(result, option: str, path: Path | str, *words: str) -> str:
    """One line naming the option and the path, exit 2, and no sweep ran (no scoreboard)."""
    line = assert_usage_error(result, f"{option} {path}", *words)
    assert "cases," not in result.output and "formulation" not in result.stdout
    return line


@pytest.mark.parametrize(("command", "option"), FILE_OUTPUTS)
def test_a_file_output_that_cannot_be_written_is_refused_before_the_sweep(tmp_path, command, option):
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        (tmp_path / "dir.csv", "is a directory"),
        (tmp_path / "missing" / "o.csv", "does not exist"),
        (tmp_path / "file" / "o.csv", "is not a directory"),
    ]
    if Path("/proc/self").is_dir():  # root may write anywhere by access(), yet nothing can be created in /proc
        cases.append((Path("/proc/o.csv"), "cannot write in /proc"))
    for path, words in cases:
        _refused_before_the_run(runner().invoke(main, _args(command, option, path)), option, path, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.csv", "file"]
    assert not any((tmp_path / "dir.csv").iterdir())


@pytest.mark.parametrize(("command", "option"), DIR_OUTPUTS)
def test_a_directory_output_that_cannot_be_written_is_refused_before_the_sweep(tmp_path, command, option):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cases = [
        (tmp_path / "file", "not a directory"),
        (tmp_path / "dangling", "symbolic link", str(tmp_path / "nowhere"), "does not exist"),
        (tmp_path / "missing" / "d", "does not exist"),
    ]
    if Path("/proc/self").is_dir():
        cases.append((Path("/proc/d"), "cannot create it in /proc"))
    for path, *words in cases:
        _refused_before_the_run(runner().invoke(main, _args(command, option, path)), option, path, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "file"]
    assert (tmp_path / "file").read_text() == "x" and not (tmp_path / "nowhere").exists()


def test_the_probe_leaves_nothing_behind_and_a_good_run_writes_everything(tmp_path):
    args = ["sweep", *TINY, "-y", "1", "--csv", str(tmp_path / "a.csv"), "--repro", str(tmp_path / "r")]
    assert_exit(runner().invoke(main, args), 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "r"]
    assert all(p.suffix == ".py" for p in (tmp_path / "r").iterdir())


def test_a_directory_where_a_repro_file_goes_is_refused_before_anything_is_written(tmp_path):
    """The names of --repro's files come from the failing cases, known after the sweep: a
    directory at one of them is found then, before the first output is written."""
    out = tmp_path / "r"
    (out / "test_naive_logits_float16_y1_loss.py").mkdir(parents=True)
    args = ["sweep", *TINY, "-y", "1", "--csv", str(tmp_path / "a.csv"), "--repro", str(out)]
    result = runner().invoke(main, args)
    assert_exit(result, 2)
    (line,) = result.stderr.splitlines()
    assert "--repro" in line and "test_naive_logits_float16_y1_loss.py is a directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert [p.name for p in out.iterdir()] == ["test_naive_logits_float16_y1_loss.py"]


# --------------------------------------------------------------------------- all or nothing


def _three_outputs(tmp_path: Path) -> list[tuple[Output, str]]:
    (tmp_path / "a.csv").write_text("old a\n")
    (tmp_path / "b.json").write_text("old b\n")
    return [
        (Output("--csv", tmp_path / "a.csv"), "new a\n"),
        (Output("--json", tmp_path / "b.json"), "new b\n"),
        (Output("--details", tmp_path / "c.csv"), "new c\n"),
    ]


def _failing_on(calls: set[int], monkeypatch) -> list[tuple[str, str]]:
    """os.replace failing (EIO) on the calls numbered in ``calls`` (1 is the first); returns the log."""
    real = os.replace
    log: list[tuple[str, str]] = []

    def replace(src, dst, *args, **kwargs):
        log.append((str(src), str(dst)))
        if len(log) in calls:
            raise OSError(5, "Input/output error")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return log


def test_a_rename_that_fails_midway_puts_back_the_outputs_already_renamed(tmp_path, monkeypatch):
    from bce_audit.errors import OutputsNotWritten
    from bce_audit.files import write_outputs

    items = _three_outputs(tmp_path)
    log = _failing_on({2}, monkeypatch)
    announced: list[Output] = []
    with pytest.raises(OutputsNotWritten) as caught:
        write_outputs(items, announce=announced.append)
    message = str(caught.value)
    assert message.startswith(f"--json {tmp_path / 'b.json'}: cannot write: Input/output error; nothing was written")
    assert f"put back as they were: --csv {tmp_path / 'a.csv'}" in message and "\n" not in message
    # the first rename was undone (the old a.csv renamed back over the new one), the third never made
    assert [dst for _, dst in log] == [str(tmp_path / "a.csv"), str(tmp_path / "b.json"), str(tmp_path / "a.csv")]
    assert (tmp_path / "a.csv").read_text() == "old a\n" and (tmp_path / "b.json").read_text() == "old b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]  # no backup, no temporary file
    assert announced == []


def test_a_new_output_renamed_before_the_failure_is_removed(tmp_path, monkeypatch):
    from bce_audit.errors import OutputsNotWritten
    from bce_audit.files import write_outputs

    a, b, c = _three_outputs(tmp_path)
    _failing_on({2}, monkeypatch)
    with pytest.raises(OutputsNotWritten, match="nothing was written; put back as they were: --details"):
        write_outputs([c, a, b])  # c.csv did not exist: it is removed again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]


def test_a_target_that_became_a_directory_after_the_check_leaves_every_output_as_it_was(tmp_path):
    """A real fault, nothing injected: the second target is a directory by the time of the
    renames (it was checked before the sweep), so its rename fails and the first is undone."""
    from bce_audit.errors import OutputsNotWritten
    from bce_audit.files import write_outputs

    items = _three_outputs(tmp_path)
    (tmp_path / "b.json").unlink()
    (tmp_path / "b.json").mkdir()
    with pytest.raises(OutputsNotWritten, match=r"--json .*b\.json: cannot write: Is a directory; nothing was written"):
        write_outputs(items)
    assert (tmp_path / "a.csv").read_text() == "old a\n" and not (tmp_path / "c.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]
    assert not any((tmp_path / "b.json").iterdir())


def test_an_output_that_cannot_be_put_back_is_named_with_where_its_old_file_is(tmp_path, monkeypatch):
    from bce_audit.errors import OutputsNotWritten
    from bce_audit.files import write_outputs

    items = _three_outputs(tmp_path)
    _failing_on({2, 3}, monkeypatch)  # the rename of b.json, then the one that would put a.csv back
    with pytest.raises(OutputsNotWritten) as caught:
        write_outputs(items)
    message = str(caught.value)
    assert f"written: --csv {tmp_path / 'a.csv'}" in message and "could not be put back (Input/output error" in message
    (backup,) = [p for p in tmp_path.iterdir() if p.name.endswith(".bak")]
    assert f"its old file is {backup}" in message
    assert backup.read_text() == "old a\n" and (tmp_path / "a.csv").read_text() == "new a\n"
    assert (tmp_path / "b.json").read_text() == "old b\n" and not (tmp_path / "c.csv").exists()


def test_outputs_written_together_leave_no_backup(tmp_path):
    from bce_audit.files import write_outputs

    write_outputs(_three_outputs(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json", "c.csv"]
    assert [(tmp_path / n).read_text() for n in ("a.csv", "b.json", "c.csv")] == ["new a\n", "new b\n", "new c\n"]


def test_without_hard_links_the_outputs_are_written_and_a_failure_says_what_could_not_be_undone(tmp_path, monkeypatch):
    from bce_audit.errors import OutputsNotWritten
    from bce_audit.files import write_outputs

    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # as on FAT or some network file systems
    write_outputs(_three_outputs(tmp_path))
    assert (tmp_path / "a.csv").read_text() == "new a\n"
    _failing_on({2}, monkeypatch)
    with pytest.raises(OutputsNotWritten) as caught:
        write_outputs(_three_outputs(tmp_path))
    message = str(caught.value)
    assert f"written: --csv {tmp_path / 'a.csv'}" in message
    assert "could not be put back (its old file could not be kept: Operation not permitted)" in message
    assert (tmp_path / "b.json").read_text() == "old b\n"
