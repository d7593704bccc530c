//! The response body type shared by both listeners.
//!
//! One enum covers the normal case (a complete buffer) and the two
//! misbehaving ones the faults need: a stream of PEM-looking filler that is
//! never held in memory as a whole, and a body that ends with an error after
//! half of its bytes so that hyper aborts the connection mid-response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// How long a truncated body waits after its data before failing.
const TRUNCATE_PAUSE: Duration = Duration::from_millis(50);
/// Size of one filler chunk.
const FILLER_CHUNK: usize = 16 * 1024;
const FILLER_HEADER: &[u8] = b"-----BEGIN CERTIFICATE-----\n";
const FILLER_LINE: &[u8] = b"MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n";

/// A response body.
#[derive(Debug)]
pub(crate) enum Body {
    /// A complete buffer (taken on first poll).
    Full(Option<Bytes>),
    /// `remaining` bytes of PEM-looking filler; `exact` tells hyper the size
    /// up front (so it sends `Content-Length`) instead of chunking.
    Filler {
        remaining: usize,
        started: bool,
        exact: bool,
    },
    /// Sends these bytes, waits briefly so hyper flushes them (and the
    /// head), then fails so the connection is torn down.
    Truncated {
        data: Option<Bytes>,
        pause: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl Body {
    pub(crate) fn full(data: impl Into<Bytes>) -> Body {
        Body::Full(Some(data.into()))
    }

    pub(crate) fn truncated(data: Bytes) -> Body {
        Body::Truncated {
            data: Some(data),
            pause: None,
        }
    }

    pub(crate) fn filler(len: usize, exact: bool) -> Body {
        Body::Filler {
            remaining: len,
            started: false,
            exact,
        }
    }
}

fn filler_chunk(len: usize, first: bool) -> Bytes {
    let mut chunk = Vec::with_capacity(len);
    if first {
        chunk.extend_from_slice(&FILLER_HEADER[..len.min(FILLER_HEADER.len())]);
    }
    while chunk.len() < len {
        let take = (len - chunk.len()).min(FILLER_LINE.len());
        chunk.extend_from_slice(&FILLER_LINE[..take]);
    }
    Bytes::from(chunk)
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this {
            Body::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Body::Filler {
                remaining, started, ..
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let len = (*remaining).min(FILLER_CHUNK);
                let chunk = filler_chunk(len, !*started);
                *started = true;
                *remaining -= len;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Body::Truncated { data, pause } => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                let pause =
                    pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(TRUNCATE_PAUSE)));
                match pause.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "dds-standin: truncating the response on purpose",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(data) => data.is_none(),
            Body::Filler { remaining, .. } => *remaining == 0,
            Body::Truncated { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Body::Filler {
                remaining, exact, ..
            } if *exact => SizeHint::with_exact(*remaining as u64),
            Body::Filler { .. } | Body::Truncated { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_starts_like_pem_and_has_exact_length() {
        let chunk = filler_chunk(100, true);
        assert_eq!(chunk.len(), 100);
        assert!(chunk.starts_with(FILLER_HEADER));
        let tiny = filler_chunk(5, true);
        assert_eq!(&tiny[..], &FILLER_HEADER[..5]);
    }
}
