"""The local control channel: framing, end of file, timeouts, and polling before blocking."""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from nrp_core.engines.channel import SPIN_ENV, Channel, SpinPolicy


@pytest.fixture(params=[0.0, 300e-6], ids=["blocking", "polling"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Channel, Channel]]:
    ours, theirs = socket.socketpair()
    left, right = Channel(ours, SpinPolicy(request.param)), Channel(theirs, SpinPolicy(request.param))
    yield left, right
    left.close()
    right.close()


def test_messages_of_any_size_arrive_whole_and_in_order(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    big = {"proto": bytes(range(256)) * 2000}  # larger than one receive chunk
    messages = [("step", {}, 10), ("ok", big), ("shutdown",)]
    # The receiver runs in a thread: a big message does not fit the socket buffer at once.
    received: list[object] = []
    reader = threading.Thread(target=lambda: received.extend(right.recv() for _ in messages))
    reader.start()
    for message in messages:
        left.send(message)
    reader.join()
    assert received == messages


def test_messages_sent_back_to_back_are_told_apart(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    frames = b"".join(
        struct.pack("<I", len(payload)) + payload for payload in (pickle.dumps(n, 5) for n in range(3))
    )
    left.sock.sendall(frames)  # one send: the receiver gets all three frames in one recv
    assert [right.recv() for _ in range(3)] == [0, 1, 2]


def test_a_message_split_across_sends_is_reassembled(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    payload = pickle.dumps(("ok", "x" * 100), 5)
    frame = struct.pack("<I", len(payload)) + payload
    left.sock.sendall(frame[:3])
    reader_result: list[object] = []
    reader = threading.Thread(target=lambda: reader_result.append(right.recv()))
    reader.start()
    left.sock.sendall(frame[3:50])
    left.sock.sendall(frame[50:])
    reader.join()
    assert reader_result == [("ok", "x" * 100)]


def test_end_of_file_raises_eof_error(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    left.send(("ok", None))
    left.close()
    assert right.recv() == ("ok", None)  # what was sent before the close still arrives
    with pytest.raises(EOFError):
        right.recv()


def test_a_timeout_raises_and_leaves_the_socket_blocking(pair: tuple[Channel, Channel]) -> None:
    left, right = pair
    with pytest.raises(TimeoutError):
        right.recv(timeout=0.05)
    assert right.sock.gettimeout() is None
    left.send("late")
    assert right.recv() == "late"


def test_polling_that_finds_nothing_pauses_and_the_pause_grows() -> None:
    ours, theirs = socket.socketpair()
    try:
        policy = SpinPolicy(100e-6, min_backoff=60.0, max_backoff=600.0)
        buffer = memoryview(bytearray(16))
        assert policy.poll(theirs, buffer) is None  # the window passed: the caller blocks
        assert policy.off_until > 0 and policy.backoff == 120.0
        ours.sendall(b"x")
        assert policy.poll(theirs, buffer) is None  # paused: no polling, even with data waiting
        assert theirs.recv_into(buffer) == 1
    finally:
        ours.close()
        theirs.close()


def test_polling_returns_data_and_end_of_file() -> None:
    ours, theirs = socket.socketpair()
    try:
        policy = SpinPolicy(0.5)
        buffer = memoryview(bytearray(16))
        ours.sendall(b"abc")
        assert policy.poll(theirs, buffer) == 3
        assert bytes(buffer[:3]) == b"abc"
        ours.close()
        assert policy.poll(theirs, buffer) == 0
    finally:
        theirs.close()


@pytest.mark.parametrize(
    ("value", "window"), [(None, 300e-6), ("0", 0.0), ("50", 50e-6), ("-3", 0.0), ("x", 0.0)]
)
def test_the_polling_window_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, window: float
) -> None:
    if value is None:
        monkeypatch.delenv(SPIN_ENV, raising=False)
    else:
        monkeypatch.setenv(SPIN_ENV, value)
    policy = SpinPolicy.shared()
    assert policy.window == pytest.approx(window)
    assert SpinPolicy.shared() is policy  # one policy per process and value, shared by channels
    ours, theirs = socket.socketpair()
    channel = Channel(ours)
    try:
        assert channel.spin is policy
    finally:
        channel.close()
        theirs.close()
