//! hookcast.js, the browser client (`hookcast.js` next to this file, embedded with
//! `include_str!`: no build step, no dependency): `GET /hookcast.js` is the classic script (its
//! top-level `var hookcast` is `window.hookcast`), `GET /hookcast.mjs` the same text plus an
//! `export` footer for `import { connect } from '/hookcast.mjs'`. One file cannot be both: an
//! `export` statement is a syntax error in a classic script. Both carry the content's version
//! as `ETag` and are cached for good under `?v=` that version (`http::asset`).

use crate::http::asset::{fnv1a, serve, FNV_SEED};
use crate::http::request::Head;
use crate::http::response::Response;
use std::sync::OnceLock;

/// The client's source: a classic script defining `hookcast`.
const SOURCE: &str = include_str!("hookcast.js");
/// What turns the classic script into an ES module; its top-level `var` is module-scoped there.
const MODULE_FOOTER: &str = "\nexport const connect = hookcast.connect;\nexport default hookcast;\n";
const VERSION_HASH: u64 = fnv1a(fnv1a(FNV_SEED, SOURCE), MODULE_FOOTER);
const CONTENT_TYPE: &str = "text/javascript; charset=utf-8";

/// The client's version (its `ETag` and `?v=` value): a hash of its text.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| format!("{VERSION_HASH:016x}"))
}

fn module_text() -> &'static str {
    static M: OnceLock<String> = OnceLock::new();
    M.get_or_init(|| format!("{SOURCE}{MODULE_FOOTER}"))
}

/// `GET /hookcast.js` (`module` false) or `GET /hookcast.mjs`: the client, to anyone (it holds
/// no data). A cross-origin `import` needs the page's origin in `cors.allowed_origins`, as the
/// client's own requests do.
pub fn script(head: &Head, module: bool) -> Response {
    let body = if module { module_text() } else { SOURCE };
    serve(head, body, CONTENT_TYPE, version())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_share_one_source() {
        assert!(SOURCE.contains("var hookcast = "));
        assert!(!SOURCE.contains("export "), "a classic script cannot export");
        assert!(module_text().starts_with(SOURCE) && module_text().ends_with(MODULE_FOOTER));
        assert_eq!(version().len(), 16);
    }
}
