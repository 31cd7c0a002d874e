//! lapin errors → [`SinkError`] kinds.

use hookbridge_sink_core::SinkError;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

/// Classifies a lapin error. Channel-level refusals that no retry can fix (no such exchange,
/// access refused, precondition failed, too large) are permanent; everything else (IO, closed
/// connection, heartbeat loss) is retryable.
pub fn classify(what: &str, e: lapin::Error) -> SinkError {
    if let lapin::ErrorKind::ProtocolError(amqp) = e.kind() {
        let permanent = matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::NOTFOUND
                    | AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::CONTENTTOOLARGE
            )
        );
        if permanent {
            return SinkError::rejected(format!("{what}: {}", amqp.get_message())).with_source(e);
        }
    }
    SinkError::unavailable(what.to_owned()).with_source(e)
}
