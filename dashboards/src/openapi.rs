//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of this API (CONTRACTS §7).
//!
//! The document is hand-written in `openapi.json` next to this file and embedded at build
//! time. It is served like every other `/api/v1` route, behind a bearer token of any role
//! (CONTRACTS §7 puts everything but `/health` and `/metrics` under auth). A test compares its
//! `paths` with [`crate::ROUTES`], the list the router is built from, so that a route cannot be
//! added, removed or renamed without the document following.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::api::READ_ROLES;
use crate::auth::Caller;
use crate::error::ApiError;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub(crate) async fn document(caller: Caller) -> Result<Response, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    Ok(([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::ROUTES;

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON")
    }

    #[test]
    fn the_document_is_openapi_3_with_paths_and_bearer_auth() {
        let d = doc();
        assert!(d["openapi"].as_str().unwrap().starts_with("3."));
        assert!(d["paths"].as_object().is_some_and(|p| !p.is_empty()));
        assert_eq!(
            d["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(d["security"][0]["bearer"], serde_json::json!([]));
    }

    /// Every (method, path) of the router is in the document and the document has no other.
    #[test]
    fn the_document_describes_exactly_the_routes_of_the_router() {
        let d = doc();
        let documented: BTreeSet<(String, String)> = d["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| {
                        [
                            "get", "put", "post", "delete", "patch", "head", "options", "trace",
                        ]
                        .contains(&k.as_str())
                    })
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            stale.is_empty(),
            "openapi.json documents routes the router lacks: {stale:?}"
        );
    }

    /// Each operation answers the auth errors (unless public), declares its path parameters,
    /// and every `$ref` resolves.
    #[test]
    fn operations_are_complete_and_references_resolve() {
        let d = doc();
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let what = format!("{method} {path}");
                let responses = op["responses"].as_object().unwrap();
                let public = op.get("security") == Some(&serde_json::json!([]));
                if !public {
                    for code in ["401", "403"] {
                        assert!(responses.contains_key(code), "{what} lacks {code}");
                    }
                }
                assert!(
                    responses.keys().any(|c| c.starts_with('2')),
                    "{what} has no success response"
                );
                if path.contains("{id}") {
                    assert!(responses.contains_key("404"), "{what} lacks 404");
                    let declares_id = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| {
                            let p = match p["$ref"].as_str() {
                                Some(r) => d.pointer(r.trim_start_matches('#')).unwrap_or(p),
                                None => p,
                            };
                            p["name"] == "id" && p["in"] == "path"
                        })
                    });
                    assert!(declares_id, "{what} does not declare `id`");
                }
                if method == "post" {
                    assert!(responses.contains_key("422"), "{what} lacks 422");
                }
            }
        }
        let mut refs = Vec::new();
        collect_refs(&d, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').expect("only local references");
            assert!(d.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(s)) => out.push(s.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
