"""The FastAGI adapter (ivr.agi_channel.AgiSession) against a fake Asterisk on a socketpair.

The fake writes the AGI environment, then answers each command line with the next scripted reply,
exactly as Asterisk 16 does (``200 result=...``, ``HANGUP``, ``511 ...``), and records every byte the
session sent, so tests can assert both the commands and that nothing at all was sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ivr.agi_channel import AgiArgumentError, AgiSession
from ivr.survey_script import CallerHungUp

ENV = {
    "agi_network": "yes",
    "agi_network_script": "survey",
    "agi_request": "agi://127.0.0.1:4573/survey",
    "agi_channel": "PJSIP/customer-00000000",
    "agi_language": "en",
    "agi_type": "PJSIP",
    "agi_uniqueid": "1700000000.0",
    "agi_version": "16.28.0",
    "agi_callerid": "5550100",
    "agi_calleridname": "a-001",
    "agi_context": "csat-survey",
    "agi_extension": "s",
    "agi_priority": "3",
    "agi_threadid": "140000000000000",
    "agi_arg_1": "1700000000.0",
    "agi_arg_2": "support",
    "agi_arg_3": "agent1",
    "agi_arg_4": "PJSIP/agent1",
    "agi_arg_5": "",
}

CLOSE = None  # a reply that closes the socket instead of answering


class FakeAsterisk:
    def __init__(
        self,
        replies: list[str | None],
        env: dict[str, str] | None = None,
        on_command: Callable[[str], None] | None = None,
    ) -> None:
        self.on_command = on_command
        self.ours, theirs = socket.socketpair()
        self.session_sock = theirs
        self.replies = list(replies)
        self.env = ENV if env is None else env
        self.received = b""
        self.commands: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sock = self.ours
        try:
            sock.sendall("".join(f"{k}: {v}\n" for k, v in self.env.items()).encode() + b"\n")
            buf = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                self.received += chunk
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.commands.append(line.decode())
                    if self.on_command is not None:
                        self.on_command(line.decode())
                    if not self.replies:
                        continue  # unexpected command: leave the session waiting (tests fail on commands)
                    reply = self.replies.pop(0)
                    if reply is CLOSE:
                        sock.close()
                        return
                    sock.sendall(reply.encode())
        except OSError:
            return

    def session(self) -> AgiSession:
        self.session_sock.settimeout(5)  # a bug must fail the test, not hang it
        return AgiSession(self.session_sock)

    def finish(self) -> None:
        """The session side is done: let the fake see EOF and stop."""
        with contextlib.suppress(OSError):
            self.session_sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.session_sock.close()
        self.ours.close()


@pytest.fixture
def asterisk() -> Iterator[list[FakeAsterisk]]:
    made: list[FakeAsterisk] = []
    yield made
    for fake in made:
        fake.finish()


def start(made: list[FakeAsterisk], replies: list[str | None], env: dict[str, str] | None = None):
    fake = FakeAsterisk(replies, env)
    made.append(fake)
    return fake, fake.session()


def test_environment_and_arguments_are_parsed(asterisk: list[FakeAsterisk]) -> None:
    fake, s = start(asterisk, [])
    assert s.env == ENV
    assert s.env["agi_uniqueid"] == "1700000000.0"
    assert s.env["agi_request"] == "agi://127.0.0.1:4573/survey"  # a value holding ':' survives
    assert [s.arg(i) for i in range(1, 6)] == ["1700000000.0", "support", "agent1", "PJSIP/agent1", ""]
    assert s.arg(9) == ""
    assert fake.received == b""  # reading the environment sends nothing


def test_ask_returns_the_digits(asterisk: list[FakeAsterisk]) -> None:
    fake, s = start(asterisk, ["200 result=4\n", "200 result=10 (timeout)\n"])
    assert s.ask("/var/lib/csat/prompts/en/default/q-csat", 5000, 1) == "4"
    assert s.ask("/var/lib/csat/prompts/en/default/q-nps", 5000, 2) == "10"
    assert fake.commands == [
        "GET DATA /var/lib/csat/prompts/en/default/q-csat 5000 1",
        "GET DATA /var/lib/csat/prompts/en/default/q-nps 5000 2",
    ]


def test_silence_is_an_empty_answer(asterisk: list[FakeAsterisk]) -> None:
    _, s = start(asterisk, ["200 result= (timeout)\n", "200 result=\n"])
    assert s.ask("q-csat", 4000, 1) == ""
    assert s.ask("q-csat", 4000, 1) == ""


@pytest.mark.parametrize(
    "reply",
    [
        "HANGUP\n",
        "511 Command Not Permitted on a dead channel or intercept routine\n",
        "200 result=-1\n",
        "200 result=-1 (hangup)\n",
        CLOSE,
    ],
    ids=["HANGUP", "511", "result-1", "result-1-hangup", "socket-closed"],
)
def test_hangups_become_caller_hung_up(asterisk: list[FakeAsterisk], reply: str | None) -> None:
    fake, s = start(asterisk, [reply])
    with pytest.raises(CallerHungUp):
        s.ask("q-csat", 5000, 1)
    assert fake.commands == ["GET DATA q-csat 5000 1"]


@pytest.mark.parametrize("reply", ["HANGUP\n", "511 Command Not Permitted on a dead channel\n", CLOSE])
def test_play_hangup(asterisk: list[FakeAsterisk], reply: str | None) -> None:
    fake, s = start(asterisk, [reply])
    with pytest.raises(CallerHungUp):
        s.play("/p/en/default/thanks")
    assert fake.commands == ['STREAM FILE /p/en/default/thanks "" 0']


def test_play_streams_the_file(asterisk: list[FakeAsterisk]) -> None:
    fake, s = start(asterisk, ["200 result=0 endpos=16000\n"])
    s.play("/p/en/default/thanks")
    assert fake.commands == ['STREAM FILE /p/en/default/thanks "" 0']


def test_hangup_line_after_a_result(asterisk: list[FakeAsterisk]) -> None:
    """Asterisk sends HANGUP on its own when the caller leaves; the next command then sees it."""
    _, s = start(asterisk, ["200 result=0 endpos=100\n", "HANGUP\n"])
    s.play("p1")
    with pytest.raises(CallerHungUp):
        s.ask("p2", 5000, 1)


def test_hangup_line_in_the_same_packet_as_a_result(asterisk: list[FakeAsterisk]) -> None:
    fake, s = start(asterisk, ["200 result=0 endpos=100\nHANGUP\n"])
    s.play("p1")
    fake.session_sock.settimeout(
        0.5
    )  # Asterisk stays silent after HANGUP until it gets a command it can refuse
    with pytest.raises(CallerHungUp):
        s.ask("p2", 5000, 1)


def test_set_variable(asterisk: list[FakeAsterisk]) -> None:
    fake, s = start(asterisk, ["200 result=1\n"])
    s.set_variable("CSAT_RESULT", "completed")
    assert fake.commands == ['SET VARIABLE CSAT_RESULT "completed"']


@pytest.mark.parametrize("value", ['a"b', "a\nb", "a\rb", "a\\b", '"', "completed\nEXEC Dial PJSIP/premium"])
def test_set_variable_refuses_unsafe_values_and_sends_nothing(
    asterisk: list[FakeAsterisk], value: str
) -> None:
    fake, s = start(asterisk, [])
    with pytest.raises(AgiArgumentError):
        s.set_variable("CSAT_RESULT", value)
    fake.finish()
    asterisk.remove(fake)
    assert fake.received == b""
    assert fake.commands == []


@pytest.mark.parametrize("name", ["CSAT RESULT", "A;B", 'X"', ""])
def test_set_variable_refuses_unsafe_names(asterisk: list[FakeAsterisk], name: str) -> None:
    fake, s = start(asterisk, [])
    with pytest.raises(AgiArgumentError):
        s.set_variable(name, "ok")
    fake.finish()
    asterisk.remove(fake)
    assert fake.received == b""


@pytest.mark.parametrize(
    "prompt", ["/var/lib/csat/my prompts/q-csat", "q-csat 1 1\nEXEC System x", 'q"csat', "q-csat;x", ""]
)
def test_unsafe_prompt_paths_are_refused_before_sending(asterisk: list[FakeAsterisk], prompt: str) -> None:
    fake, s = start(asterisk, [])
    with pytest.raises(AgiArgumentError):
        s.ask(prompt, 5000, 1)
    with pytest.raises(AgiArgumentError):
        s.play(prompt)
    fake.finish()
    asterisk.remove(fake)
    assert fake.received == b""


@pytest.mark.parametrize("what", ["value", "prompt"])
def test_a_trailing_newline_is_refused_too(asterisk: list[FakeAsterisk], what: str) -> None:
    fake, s = start(asterisk, ["200 result=1\n", "200 result=0\n", "200 result=0\n"])
    with pytest.raises(AgiArgumentError):
        if what == "value":
            s.set_variable("CSAT_RESULT", "completed\n")
        else:
            s.play("q-csat\n")
    fake.finish()
    asterisk.remove(fake)
    assert fake.received == b""


def test_send_text_quotes_and_refuses_quotes(asterisk: list[FakeAsterisk]) -> None:
    fake, s = start(asterisk, ["200 result=0\n"])
    s.send_text("SURVEY_PROMPT 3 agent1")
    with pytest.raises(AgiArgumentError):
        s.send_text('say "hi"')
    assert fake.commands == ['SEND TEXT "SURVEY_PROMPT 3 agent1"']


def test_record_command_and_result(asterisk: list[FakeAsterisk], tmp_path: Path) -> None:
    path = tmp_path / "rec" / "1700000000.0-why.wav"

    def asterisk_writes_the_file(command: str) -> None:  # before it answers, like Asterisk
        path.write_bytes(b"RIFF" + b"\0" * 200)

    fake = FakeAsterisk(["200 result=0 (dtmf) endpos=24000\n"], on_command=asterisk_writes_the_file)
    asterisk.append(fake)
    s = fake.session()
    assert s.record(path, 20) is True
    assert fake.commands == [f'RECORD FILE {tmp_path}/rec/1700000000.0-why wav "#" 20000 0 BEEP s=5']


def test_record_without_a_file_is_false(asterisk: list[FakeAsterisk], tmp_path: Path) -> None:
    _, s = start(asterisk, ["200 result=0 (timeout) endpos=0\n"])
    assert s.record(tmp_path / "r" / "x.wav", 5) is False
    assert (tmp_path / "r").is_dir()  # the directory is made for Asterisk to write into


def test_record_hangup(asterisk: list[FakeAsterisk], tmp_path: Path) -> None:
    _, s = start(asterisk, ["200 result=-1 (hangup) endpos=8000\n"])
    with pytest.raises(CallerHungUp):
        s.record(tmp_path / "r" / "x.wav", 5)


def test_record_path_with_a_space_is_refused(asterisk: list[FakeAsterisk], tmp_path: Path) -> None:
    fake, s = start(asterisk, [])
    with pytest.raises(AgiArgumentError):
        s.record(tmp_path / "my recordings" / "x.wav", 5)
    fake.finish()
    asterisk.remove(fake)
    assert fake.received == b""


def test_nothing_reaches_stderr_or_stdout(
    asterisk: list[FakeAsterisk], capfd: pytest.CaptureFixture[str]
) -> None:
    """pyst2 echoes the environment (caller ID included) and every command to stderr; we must not."""
    _, s = start(asterisk, ["200 result=4\n", "200 result=0\n", "200 result=1\n", "HANGUP\n"])
    s.ask("q-csat", 5000, 1)
    s.play("thanks")
    s.set_variable("CSAT_RESULT", "completed")
    with pytest.raises(CallerHungUp):
        s.ask("q-nps", 5000, 2)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_announce_prompt_is_a_no_op(asterisk: list[FakeAsterisk]) -> None:
    fake, s = start(asterisk, [])
    assert s.announce_prompt(1) is None
    fake.finish()
    asterisk.remove(fake)
    assert fake.received == b""
