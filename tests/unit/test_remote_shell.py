"""Scripts are built so that no value becomes shell code; batches split back exactly."""

from __future__ import annotations

import subprocess

import pytest

from cubeinstall.remote.shell import (
    ROOT_SHELL_OR_SUDO,
    SHELL_MARK,
    Section,
    batch,
    heredoc_base64,
    join,
    q,
    split_batch,
    sudo_command,
    wrap,
)

HOSTILE = ["a'b", 'a"b', "$(touch CANARY)", "`touch CANARY`", "x; touch CANARY", "a\nb",
           "-rf", "*", "~root", "\\", ""]


def sh(script: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-s"], input=wrap(script), capture_output=True, text=True, cwd=cwd,
                          check=False)


@pytest.mark.parametrize("value", HOSTILE)
def test_quoted_values_reach_the_command_unchanged(value, tmp_path):
    done = sh(f"printf '%s' {q(value)}", tmp_path)
    assert done.stdout == value
    assert not (tmp_path / "CANARY").exists()


def test_join_quotes_every_word(tmp_path):
    done = sh(f"printf '[%s]' {join(*HOSTILE[:5])}", tmp_path)
    assert done.stdout == "".join(f"[{v}]" for v in HOSTILE[:5])
    assert not (tmp_path / "CANARY").exists()


def test_heredoc_writes_any_bytes(tmp_path):
    data = bytes(range(256)) + b"\nCUBEINSTALL_END\n'$(touch CANARY)'"
    done = sh(heredoc_base64(data, q(str(tmp_path / "out"))), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == data
    assert not (tmp_path / "CANARY").exists()


def test_the_body_cannot_read_the_rest_of_the_script(tmp_path):
    # `cat` alone would swallow the script from stdin if the body were not isolated.
    done = sh("cat; echo after", tmp_path)
    assert done.stdout == "after\n"


def test_batch_gives_each_section_its_output_and_status(tmp_path):
    sections = [Section("a", "echo one; echo err >&2; exit 3"), Section("b", "printf 'no newline'"),
                Section("c", "printf '\\n\\n'")]
    script, marker = batch(sections)
    done = sh(script, tmp_path)
    assert split_batch(done.stdout, marker, sections) == {
        "a": ("one\n", 3), "b": ("no newline", 0), "c": ("\n\n", 0)}


def test_apply_batch_stops_at_the_first_failure_and_keeps_stderr(tmp_path):
    sections = [Section("a", "echo ok"), Section("b", "false; echo not reached"),
                Section("c", "touch CANARY")]
    script, marker = batch(sections, apply=True)
    done = sh(script, tmp_path)
    results = split_batch(done.stdout, marker, sections)
    assert results["a"] == ("ok\n", 0)
    assert results["b"][1] != 0 and "not reached" not in results["b"][0]
    assert "c" not in results and not (tmp_path / "CANARY").exists()


@pytest.mark.parametrize("mode, command", [
    ("root", "sh -s"),
    ("nopasswd", "sudo -n -- sh -s"),
    ("password", "sudo -k -S -p '' -- sh -s"),
])
def test_the_remote_command_line_never_carries_values(mode, command):
    assert sudo_command(mode) == command


def test_the_session_that_finds_root_says_so_and_becomes_the_shell(tmp_path):
    """Run as the login shell would (bash -c), as root like the unit suite: uid 0 announces
    itself and reads the scripts (sudo -n is the sudo user's test, on a real sshd node)."""
    done = subprocess.run(["bash", "-c", ROOT_SHELL_OR_SUDO], input="echo $((6 * 7))\n",
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    assert done.stdout == f"{SHELL_MARK} root\n42\n"


def test_reads_after_the_changes_run_only_when_every_change_succeeded(tmp_path):
    then = [Section("r", "cat done.txt")]
    script, marker = batch([Section("a", "echo yes > done.txt")], apply=True, then=then)
    results = split_batch(sh(script, tmp_path).stdout, marker, [Section("a", ""), *then])
    assert results == {"a": ("", 0), "r": ("yes\n", 0)}

    script, marker = batch([Section("a", "false")], apply=True, then=then)
    results = split_batch(sh(script, tmp_path).stdout, marker, [Section("a", ""), *then])
    assert results["a"][1] != 0 and "r" not in results


def test_a_vanished_reader_cannot_kill_a_step_by_a_signal(tmp_path):
    """sshd closes the pipes of a dead installer: the write that follows fails (and a
    change step stops under set -e, its EXIT trap running) instead of killing the shell."""
    script, _ = batch([Section("a", "trap 'echo cleaned > trap.txt' EXIT\n"
                                         "kill -PIPE $$; kill -HUP $$; echo no; echo after > done.txt")],
                           apply=True)
    reader = subprocess.Popen(["sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, cwd=tmp_path)
    reader.stdout.close()  # nobody reads: every write to stdout fails
    reader.communicate(wrap(script).encode())
    assert (tmp_path / "trap.txt").read_text() == "cleaned\n"
    assert not (tmp_path / "done.txt").exists()  # the failed `echo no` stopped the step
