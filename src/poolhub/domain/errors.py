"""Domain errors: every failure the core reports, each with a readable message."""


class DomainError(Exception):
    """Base of every error the domain raises; its message is safe to show a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(DomainError):
    """A value passed shape validation but breaks a business rule."""


class AuthenticationError(DomainError):
    """Missing, unknown, expired or revoked credentials."""


class ForbiddenError(DomainError):
    """Valid credentials of a role that may not do this."""


class NotFoundError(DomainError):
    """The thing asked for does not exist."""


class MinerNotFoundError(NotFoundError):
    """No miner with that id is registered."""


class ConflictError(DomainError):
    """The request conflicts with the current state."""


class LimitExceededError(DomainError):
    """Well-formed, but accepting it would pass a configured limit of the service (422)."""


class BillingUnavailableError(DomainError):
    """The coordinator's billing API could not be reached or failed."""


class BillingRejectedError(DomainError):
    """The coordinator's billing API refused the request for good (a 4xx other than 408/429)."""
