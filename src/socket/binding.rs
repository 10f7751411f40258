//! What a socket serves: the client and the attachment, kept in the
//! socket's extensions so that handlers read it, never a lookup table.

use crate::clients::{Attachment, Client};
use socketioxide::extract::SocketRef;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a socket serves, kept in its extensions.
#[derive(Clone)]
pub struct Binding {
    pub client: Arc<Client>,
    pub attachment: Attachment,
    /// Cancelled once socketioxide has sent the connect packet: writers
    /// wait for it before they emit.
    pub connected: CancellationToken,
}

impl Binding {
    pub fn of(socket: &SocketRef) -> Option<Self> {
        socket.extensions.get::<Binding>()
    }
}
