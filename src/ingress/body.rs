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
    let mut body = std::pin::pin!(body);
    // The common case is a body that arrives in one chunk: keep it without copying. A second
    // chunk starts a buffer, pre-sized from Content-Length (already capped), never from the
    // client's word beyond it.
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ErrorReply::malformed(format!("cannot read the body: {e}")))?;
        let so_far = first.as_ref().map_or(0, Bytes::len) + buf.as_ref().map_or(0, BytesMut::len);
        if so_far as u64 + chunk.remaining() as u64 > limit {
            return Err(ErrorReply::too_large(limit));
        }
        if first.is_none() && buf.is_none() {
            first = Some(chunk.copy_to_bytes(chunk.remaining()));
            continue;
        }
        let buf = buf.get_or_insert_with(|| {
            let mut b = BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
            if let Some(f) = first.take() {
                b.extend_from_slice(&f);
            }
            b
        });
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(match (buf, first) {
        (Some(buf), _) => buf.freeze(),
        (None, Some(first)) => first,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, warp::Error>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    async fn read(parts: &[&'static [u8]], limit: u64) -> Result<Bytes, ErrorReply> {
        read_capped(&HeaderMap::new(), stream(parts), limit).await
    }

    #[tokio::test]
    async fn one_chunk_many_chunks_and_none_read_back_whole() {
        assert_eq!(read(&[b"hello"], 100).await.expect("one").as_ref(), b"hello");
        assert_eq!(
            read(&[b"he", b"", b"ll", b"o"], 100)
                .await
                .expect("many")
                .as_ref(),
            b"hello"
        );
        assert_eq!(
            read(&[b"", b"hello"], 100).await.expect("empty first").as_ref(),
            b"hello"
        );
        assert!(read(&[], 100).await.expect("none").is_empty());
    }

    #[tokio::test]
    async fn the_cap_counts_every_chunk() {
        assert_eq!(read(&[b"hello"], 5).await.expect("at the cap").as_ref(), b"hello");
        let e = read(&[b"hel", b"lo"], 4)
            .await
            .expect_err("over on the second chunk");
        assert_eq!(e.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        let e = read(&[b"hello"], 4).await.expect_err("over on the first chunk");
        assert_eq!(e.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }
}
