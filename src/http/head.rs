//! Copies each request's head (URI and header values) out of the
//! connection's read buffer before socketioxide sees it.
//!
//! hyper parses the URI and every header value as slices of the 8-16 KiB
//! buffer it read the request into, so whatever keeps them keeps that whole
//! buffer. socketioxide and engineioxide keep the handshake request's head
//! for the life of every socket (`Socket::req_parts`), so without this each
//! idle client pinned a 16 KiB buffer to hold a few hundred bytes of
//! headers (heaptrack: 16 of the 41 KiB of heap per idle client). The copy
//! costs one small allocation per header, once per HTTP request.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Uri};

/// Replace the request's URI (and axum's [`OriginalUri`]) and header values
/// with copies that own their bytes; everything else is untouched.
pub async fn detach_request_head(mut req: Request) -> Request {
    if let Ok(uri) = Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
    // axum's router keeps a clone of the URI as it arrived, before any
    // route layer runs: that clone points into the buffer too.
    let original = req
        .extensions()
        .get::<OriginalUri>()
        .map(|o| o.0.to_string());
    if let Some(Ok(uri)) = original.map(Uri::try_from) {
        req.extensions_mut().insert(OriginalUri(uri));
    }
    for value in req.headers_mut().values_mut() {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use bytes::Bytes;

    #[tokio::test]
    async fn copies_do_not_point_into_the_read_buffer() {
        // The way hyper builds a request: URI and values sliced from the
        // buffer the head was read into.
        let head = b"GET /socket.io/?EIO=4 HTTP/1.1\r\nx-probe: abc\r\n\r\n";
        let mut raw = head.to_vec();
        raw.resize(16 * 1024, 0);
        let buffer = Bytes::from(raw);
        let range = buffer.as_ptr_range();
        let within = |p: *const u8| range.contains(&p);
        let uri = Uri::from_maybe_shared(buffer.slice(4..21)).expect("uri");
        let value = HeaderValue::from_maybe_shared(buffer.slice(41..44)).expect("value");
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri.clone();
        req.extensions_mut().insert(OriginalUri(uri));
        req.headers_mut().insert("x-probe", value);
        assert!(within(req.uri().path().as_ptr()));
        assert!(within(req.headers()["x-probe"].as_bytes().as_ptr()));

        let req = detach_request_head(req).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4");
        assert!(
            !within(req.uri().path().as_ptr()),
            "URI still in the buffer"
        );
        let copied = &req.headers()["x-probe"];
        assert_eq!(copied, "abc");
        assert!(
            !within(copied.as_bytes().as_ptr()),
            "value still in the buffer"
        );
        let original = &req.extensions().get::<OriginalUri>().expect("kept").0;
        assert_eq!(original, "/socket.io/?EIO=4");
        assert!(
            !within(original.path().as_ptr()),
            "OriginalUri still in the buffer"
        );
    }

    #[tokio::test]
    async fn uri_and_sensitivity_survive() {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = "/socket.io/?EIO=4&transport=websocket"
            .parse()
            .expect("uri");
        let mut secret = HeaderValue::from_static("Bearer x");
        secret.set_sensitive(true);
        req.headers_mut().insert("authorization", secret);
        let req = detach_request_head(req).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert!(req.headers()["authorization"].is_sensitive());
    }
}
