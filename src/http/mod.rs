//! HTTP plumbing shared by every door on the port.
//!
//! [`head`] copies each request's head out of hyper's read buffer before
//! socketioxide keeps it (see there why).

pub mod head;
