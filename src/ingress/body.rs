//! Reading a request body under a cap: checked on `Content-Length` before reading, and again
//! while streaming (chunked bodies carry no length). Never answers 411.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;

use super::reply::ErrorReply;

/// Reads the whole body, refusing with 413 once it exceeds `limit` bytes.
pub async fn read_capped<S, B>(headers: &HeaderMap, body: S, limit: u64) -> Result<Bytes, ErrorReply>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let declared = match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ErrorReply::malformed("invalid Content-Length"))?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(ErrorReply::too_large(limit));
    }
    // Pre-size from Content-Length (already capped), never from the client's word beyond it.
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ErrorReply::malformed(format!("cannot read the body: {e}")))?;
        if buf.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(ErrorReply::too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}
