//! async-nats errors → [`SinkError`] kinds.

use async_nats::jetstream::context::PublishErrorKind;
use hookbridge_sink_core::SinkError;

/// Classifies a JetStream publish or ack error.
pub fn publish_error(subject: &str, e: async_nats::jetstream::context::PublishError) -> SinkError {
    let msg = format!("JetStream publish to {subject:?}");
    match e.kind() {
        // No stream captures the subject (or JetStream is off on the server): retrying will
        // not help until the configuration changes.
        PublishErrorKind::StreamNotFound => {
            SinkError::rejected(format!("no JetStream stream captures subject {subject:?}"))
        }
        PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => SinkError::rejected(msg).with_source(e),
        PublishErrorKind::TimedOut => SinkError::timeout(msg).with_source(e),
        PublishErrorKind::MaxAckPending => {
            SinkError::new(hookbridge_sink_core::ErrorKind::Nacked, msg).with_source(e)
        }
        _ => {
            // "expected stream" mismatches come back as a JetStream API error inside Other.
            let text = e.to_string();
            if text.contains("expected stream") {
                SinkError::rejected(format!("{msg}: {text}"))
            } else {
                SinkError::unavailable(msg).with_source(e)
            }
        }
    }
}

/// Classifies a core NATS publish error: a message over the server's `max_payload` or an invalid
/// subject can never be published (permanent); a failed send can (retryable).
pub fn core_publish_error(subject: &str, e: async_nats::client::PublishError) -> SinkError {
    use async_nats::client::PublishErrorKind;
    let msg = format!("NATS publish to {subject:?}");
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::InvalidSubject => {
            SinkError::rejected(msg).with_source(e)
        }
        PublishErrorKind::Send => SinkError::unavailable(msg).with_source(e),
    }
}
