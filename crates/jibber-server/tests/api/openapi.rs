//! The served OpenAPI document: it describes exactly the routes of the router, and what it says
//! about authentication holds.

use std::collections::BTreeSet;

use serde_json::json;

use crate::attacks_idor::router_routes;
use crate::helpers::spawn_app;

#[tokio::test]
async fn the_served_document_covers_every_route_and_its_auth_holds() {
    let app = spawn_app().await;
    let r = app
        .request(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(r.status.as_u16(), 200);
    let doc = &r.body;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let mut documented = BTreeSet::new();
    let mut protected = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let route = path
            .strip_prefix("/api/v1")
            .unwrap_or_else(|| panic!("{path} outside the API prefix"));
        for (method, op) in item.as_object().expect("item") {
            documented.insert(format!("{} {route}", method.to_uppercase()));
            // Every operation documents the error envelope for bad input.
            assert!(op["responses"]["400"].is_object(), "{method} {path}");
            if op["security"] == json!([{"bearer": []}]) {
                protected.push((
                    method.to_uppercase(),
                    route.replace("{id}", &uuid::Uuid::now_v7().to_string()),
                ));
            }
        }
    }
    documented.insert("GET /openapi.json".to_owned());
    assert_eq!(documented, router_routes());
    // What the document marks as needing a bearer token refuses a request without one.
    assert!(protected.len() >= 13, "{protected:?}");
    for (method, route) in protected {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let body = (method != reqwest::Method::GET).then(|| json!({}));
        app.request(method, &route, None, body)
            .await
            .assert_error(401, "UNAUTHENTICATED");
    }
    app.stop().await;
}
