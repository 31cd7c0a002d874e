//! rdkafka errors → [`SinkError`] kinds.

use hookbridge_sink_core::{ErrorKind, SinkError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Classifies a produce or delivery error.
pub fn classify(topic: &str, e: KafkaError) -> SinkError {
    use RDKafkaErrorCode as C;
    let Some(code) = e.rdkafka_error_code() else {
        return SinkError::unavailable(format!("produce to {topic:?}")).with_source(e);
    };
    let what = format!("produce to {topic:?}");
    match code {
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => {
            SinkError::rejected(format!("topic {topic:?} does not exist")).with_source(e)
        }
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidMessage | C::InvalidRecord => {
            SinkError::rejected(what).with_source(e)
        }
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::InvalidConfig => SinkError::misconfigured(what).with_source(e),
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut => {
            SinkError::timeout(what).with_source(e)
        }
        C::QueueFull => SinkError::new(ErrorKind::Nacked, "the producer queue is full").with_source(e),
        _ => SinkError::unavailable(what).with_source(e),
    }
}
