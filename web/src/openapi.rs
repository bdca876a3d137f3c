//! The OpenAPI 3.1 document, generated from the request and response types and the handlers'
//! annotations (never written by hand, so it cannot drift from the code).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error::{ErrorBody, ErrorDetail};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key with the read scope (searches, lookups) or the write scope (everything else); needed only when the server has keys",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ibex",
        description = "Hybrid (BM25 + dense) search over long documents, for retrieval-augmented generation. Every error answers {\"error\": {\"code\", \"message\"}}.",
    ),
    paths(
        api::create_index,
        api::list_indexes,
        api::get_index,
        api::delete_index,
        api::upsert_documents,
        api::get_document,
        api::delete_document,
        api::delete_documents,
        crate::search::search,
        crate::search::next_page,
        crate::snapshots::create_snapshot,
        crate::snapshots::list_snapshots,
        crate::snapshots::download_snapshot,
        crate::snapshots::restore_snapshot,
        crate::snapshots::delete_snapshot,
        crate::generate::answer,
        crate::generate::recommend,
        crate::generate::chat_completions,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "indexes", description = "Named indexes of the server's data directory"),
        (name = "documents", description = "Writes are committed (durable and searchable) before they are answered"),
        (name = "search", description = "BM25, dense and hybrid search with passages"),
        (name = "snapshots", description = "Consistent backups of an index while writes continue, downloadable and restorable"),
        (name = "generation", description = "RAG answers with checked citations, constrained recommendations, OpenAI-compatible chat completions"),
    )
)]
struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().unwrap_or_else(|e| {
        format!("{{\"error\": {{\"code\": \"internal\", \"message\": \"could not render the OpenAPI document: {e}\"}}}}")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/indexes",
            "/v1/indexes/{name}",
            "/v1/indexes/{name}/documents",
            "/v1/indexes/{name}/documents/{id}",
            "/v1/indexes/{name}/documents/delete",
            "/v1/indexes/{name}/search",
            "/v1/indexes/{name}/search/next",
            "/v1/indexes/{name}/answer",
            "/v1/indexes/{name}/recommend",
            "/v1/chat/completions",
        ] {
            assert!(paths.contains_key(path), "missing {path}");
        }
        assert!(doc["components"]["schemas"]["SearchBody"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    /// Every field of every request and response says what it is: the descriptions come from
    /// the types' doc comments, which the workspace's `missing_docs` lint requires.
    #[test]
    fn every_schema_property_is_described() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let mut undescribed = Vec::new();
        for (schema, body) in doc["components"]["schemas"].as_object().unwrap() {
            let Some(properties) = body["properties"].as_object() else {
                continue;
            };
            for (name, property) in properties {
                // A reference carries its description beside it, inside `allOf` or `oneOf`
                // (an optional reference) where utoipa wraps it.
                let has_description = |value: &serde_json::Value| {
                    value["description"].as_str().is_some_and(|d| !d.is_empty())
                };
                let described = has_description(property)
                    || ["allOf", "oneOf"].iter().any(|wrapper| {
                        property[*wrapper]
                            .as_array()
                            .is_some_and(|parts| parts.iter().any(has_description))
                    });
                if !described {
                    undescribed.push(format!("{schema}.{name}"));
                }
            }
        }
        assert!(
            undescribed.is_empty(),
            "undescribed fields: {undescribed:?}"
        );
    }
}
