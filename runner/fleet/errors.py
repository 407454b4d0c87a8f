"""Fleet-mode errors a user can act on (each prints as one line, exit 2)."""

from __future__ import annotations


class BrokerError(RuntimeError):
    """The broker cannot be used: unreachable, refused the credentials, ..."""


def broker_error(url: str, exc: BaseException) -> BrokerError:
    """One line naming the broker (without its password) and what to check."""
    from kombu.utils.url import maybe_sanitize_url

    return BrokerError(
        f"broker {maybe_sanitize_url(url)} is unreachable ({type(exc).__name__}: {exc}); "
        "check --broker and that RabbitMQ is up"
    )
