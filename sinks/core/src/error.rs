//! Classified sink errors: the bridge decides between 503 (retry later) and a permanent failure from
//! [`SinkError::is_retryable`] alone, so every sink maps its broker's errors onto an [`ErrorKind`].

use std::fmt;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The destination cannot be reached or refused for now (connection lost, broker down). Retryable.
    Unavailable,
    /// No answer within the publish deadline. Retryable: the event may or may not have landed.
    Timeout,
    /// The broker explicitly declined to take the event (nack, throttling). Retryable.
    Nacked,
    /// The destination rejected this event for good (bad request, unroutable, too large). Permanent.
    Rejected,
    /// The sink cannot work as configured (missing topic, bad credentials, bad template). Permanent.
    Misconfigured,
    /// The sink panicked while publishing this event: a bug, caught by the bridge. Not retryable
    /// by the sender (a sync answer is 500); the spool forwarder retries it a few times, then
    /// parks it with reason `crashed`.
    Crashed,
}

impl ErrorKind {
    /// A short snake_case name, used in logs and JSON bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Nacked => "nacked",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Misconfigured => "misconfigured",
            ErrorKind::Crashed => "crashed",
        }
    }
}

/// A failed publish (or health check): what kind of failure, a message, the underlying cause, and
/// an optional hint of when to try again.
#[derive(Debug)]
pub struct SinkError {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
    retry_after: Option<Duration>,
}

impl SinkError {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SinkError {
            kind,
            message: message.into(),
            source: None,
            retry_after: None,
        }
    }

    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Shorthand for [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// Shorthand for [`ErrorKind::Rejected`].
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Rejected, message)
    }

    /// Shorthand for [`ErrorKind::Crashed`].
    pub fn crashed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Crashed, message)
    }

    /// Shorthand for [`ErrorKind::Misconfigured`].
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Misconfigured, message)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches a hint of when the destination expects a retry (e.g. from `Retry-After`).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same event again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Nacked
        )
    }

    /// When the destination asked to be retried, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        let retryable = [ErrorKind::Unavailable, ErrorKind::Timeout, ErrorKind::Nacked];
        let permanent = [ErrorKind::Rejected, ErrorKind::Misconfigured];
        for k in retryable {
            assert!(SinkError::new(k, "x").is_retryable(), "{k:?}");
        }
        for k in permanent {
            assert!(!SinkError::new(k, "x").is_retryable(), "{k:?}");
        }
    }

    #[test]
    fn display_includes_kind_message_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = SinkError::unavailable("broker down")
            .with_source(io)
            .with_retry_after(Duration::from_secs(3));
        assert_eq!(e.to_string(), "unavailable: broker down: refused");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(std::error::Error::source(&e).is_some());
    }
}
