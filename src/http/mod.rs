//! HTTP plumbing shared by every door on the port.
//!
//! [`peer`] finds a request's real client address (the TCP peer, or the
//! client a trusted reverse proxy names); [`gate`] is the layer that sets
//! it on every request and admits or refuses new Engine.IO sessions;
//! [`head`] copies each request's head out of hyper's read buffer before
//! socketioxide keeps it (see there why).

pub mod gate;
pub mod head;
pub mod peer;
