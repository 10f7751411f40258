//! Test tokens: HS256 JWTs for a `sub`, valid for ten minutes.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

pub fn hs256(secret: &str, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({ "sub": sub, "exp": now + 600, "iat": now });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}
