"""Retry windows: anchored at the first action, the budget restored at exactly the window's end."""

from __future__ import annotations

from halswarm.policy import RetryWindow, current_window


def test_empty_window_has_room_and_no_reset() -> None:
    window = RetryWindow()
    assert window.has_room(1)
    assert not window.has_room(0)
    assert window.next_reset(60.0) is None


def test_spend_opens_the_window_at_the_first_action_only() -> None:
    window = RetryWindow().spend(10.0).spend(25.0)
    assert window == RetryWindow(10.0, 2)
    assert window.next_reset(60.0) == 70.0
    assert window.has_room(3)
    assert not window.has_room(2)


def test_current_window_edges() -> None:
    window = RetryWindow(10.0, 2)
    assert current_window(window, 69.999, 60.0) is window
    assert current_window(window, 70.0, 60.0) == RetryWindow()
    assert current_window(window, 500.0, 60.0) == RetryWindow()
    assert current_window(None, 0.0, 60.0) == RetryWindow()
