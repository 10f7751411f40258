//! Panics stop at the request that hit them.
//!
//! socketioxide runs each handler on its own task and tokio would only log
//! a panic there, so the client would never hear back. Handlers run their
//! fallible part through [`catch`] (synchronous) or [`catch_async`]; a
//! panic is logged with its message and becomes
//! [`GatewayError::Internal`], whose wire text is only "internal error",
//! for that one request. (Stream tasks have their own guard:
//! `relay::StreamGuard`.)

use crate::error::GatewayError;
use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// The text of a panic payload, for the log only.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

fn internal(what: &str, payload: &(dyn Any + Send)) -> GatewayError {
    tracing::error!(
        handler = what,
        panic = panic_message(payload),
        "handler panicked"
    );
    GatewayError::Internal(format!("{what} panicked"))
}

/// Run `f`; a panic becomes `internal`.
pub fn catch<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(internal(what, &*p)))
}

/// Await `fut`; a panic becomes `internal`.
pub async fn catch_async<T>(
    what: &str,
    fut: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(internal(what, &*p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_internal_and_says_nothing_more() {
        let r: Result<(), _> = catch("ai:cancel", || {
            panic!("index out of bounds at /home/dev/src/secret.rs:12 key=sk-123")
        });
        let e = r.unwrap_err();
        assert_eq!(e.code(), "internal");
        assert_eq!(e.client_message(), "internal error");
        assert_eq!(e.details(), serde_json::json!({}));
    }
}
