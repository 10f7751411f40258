//! The pages a person opens in a browser, served from the binary itself:
//! the playground at `/`, the ops page at `/ops`, the favicon, and their
//! assets (the pages' own scripts and style from `web/`, the SDK as the
//! committed `tsc` output in `clients/typescript/dist/`, and the official
//! socket.io-client browser bundle vendored in `web/vendor/`). Everything is
//! embedded with `include_bytes!`, so running the gateway needs no Node and
//! no files beside the binary.
//!
//! Each file gets its content type and a strong `ETag` computed at compile
//! time; pages and scripts are `Cache-Control: no-cache` (the browser keeps
//! them but asks again, and a `304` answers while the binary is the same),
//! so a new build is never mixed with a cached old script. The pages hold
//! nothing secret: with auth on they ask the user for a token.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file and how it is served.
struct Asset {
    url: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    cache_control: &'static str,
    /// FNV-1a of the body, computed when the binary is built.
    hash: u64,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const ICON: &str = "image/x-icon";
/// Revalidate every time (answered by a `304` while unchanged).
const REVALIDATE: &str = "no-cache";
/// The icon changes with the design, not with a build.
const DAY: &str = "public, max-age=86400";

macro_rules! asset {
    ($url:literal, $file:literal, $type:expr, $cache:expr) => {
        Asset {
            url: $url,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $file)),
            content_type: $type,
            cache_control: $cache,
            hash: fnv1a(include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/",
                $file
            ))),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("/", "web/playground.html", HTML, REVALIDATE),
    asset!("/ops", "web/ops.html", HTML, REVALIDATE),
    asset!("/favicon.ico", "web/favicon.ico", ICON, DAY),
    asset!("/assets/style.css", "web/style.css", CSS, REVALIDATE),
    asset!("/assets/common.js", "web/common.js", JS, REVALIDATE),
    asset!("/assets/playground.js", "web/playground.js", JS, REVALIDATE),
    asset!("/assets/ops.js", "web/ops.js", JS, REVALIDATE),
    asset!(
        "/assets/vendor/socket.io.esm.min.js",
        "web/vendor/socket.io.esm.min.js",
        JS,
        REVALIDATE
    ),
    asset!(
        "/assets/sdk/index.js",
        "clients/typescript/dist/index.js",
        JS,
        REVALIDATE
    ),
    asset!(
        "/assets/sdk/gateway.js",
        "clients/typescript/dist/gateway.js",
        JS,
        REVALIDATE
    ),
    asset!(
        "/assets/sdk/stream.js",
        "clients/typescript/dist/stream.js",
        JS,
        REVALIDATE
    ),
    asset!(
        "/assets/sdk/assembly.js",
        "clients/typescript/dist/assembly.js",
        JS,
        REVALIDATE
    ),
    asset!(
        "/assets/sdk/sessions.js",
        "clients/typescript/dist/sessions.js",
        JS,
        REVALIDATE
    ),
];

/// 64-bit FNV-1a: a stable fingerprint for the `ETag` (not a security
/// measure; a build that changes a file changes its tag).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The routes of every page and asset, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.url,
            get(move |headers: HeaderMap| async move { serve(asset, &headers) }),
        )
    })
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    // If-None-Match may list several tags, or be `*`.
    let unchanged = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(asset.cache_control),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_with(url: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(url);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        routes::<()>()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    #[tokio::test]
    async fn every_asset_has_its_type_cache_policy_and_tag() {
        for asset in ASSETS {
            let r = get_with(asset.url, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", asset.url);
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], asset.content_type, "{}", asset.url);
            assert_eq!(h[header::CACHE_CONTROL], asset.cache_control);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let tag = h[header::ETAG].to_str().expect("ascii").to_string();
            let body = to_bytes(r.into_body(), usize::MAX).await.expect("body");
            assert_eq!(&body[..], asset.body, "{}", asset.url);
            // A browser that has it is told so, without the body.
            let again = get_with(asset.url, Some(&format!("W/\"x\", {tag}"))).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{}", asset.url);
            assert_eq!(again.headers()[header::ETAG], tag.as_str());
            let body = to_bytes(again.into_body(), usize::MAX).await.expect("body");
            assert!(body.is_empty());
            let stale = get_with(asset.url, Some("\"0000000000000000\"")).await;
            assert_eq!(stale.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn favicon_is_a_real_icon() {
        let r = get_with("/favicon.ico", None).await;
        let body = to_bytes(r.into_body(), usize::MAX).await.expect("body");
        // ICONDIR: reserved 0, type 1 (icon), at least one image.
        assert_eq!(&body[..4], &[0, 0, 1, 0]);
        assert!(u16::from_le_bytes([body[4], body[5]]) >= 1);
    }

    /// Every module a served script imports is served too (relative
    /// imports, the pages' absolute ones, and the import map's target).
    #[test]
    fn every_import_resolves_to_a_served_asset() {
        let served = |url: &str| ASSETS.iter().any(|a| a.url == url);
        let mut checked = 0;
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap_or("");
            let base = asset.url.rsplit_once('/').map_or("", |(dir, _)| dir);
            for quote in ["from \"", "src=\"", "href=\"", ": \"/"] {
                for piece in text.split(quote).skip(1) {
                    let Some(target) = piece.split('"').next() else {
                        continue;
                    };
                    let target = if quote == ": \"/" {
                        format!("/{target}")
                    } else {
                        target.to_string()
                    };
                    let url = if let Some(rel) = target.strip_prefix("./") {
                        format!("{base}/{rel}")
                    } else if target.starts_with('/') {
                        target.clone()
                    } else {
                        continue; // a bare specifier (the import map's) or a URL
                    };
                    if !(url.ends_with(".js") || url.ends_with(".css") || url.ends_with(".ico")) {
                        continue;
                    }
                    assert!(
                        served(&url),
                        "{} refers to {url}, which is not served",
                        asset.url
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 12, "only {checked} references checked");
    }
}
