//! Which endpoint a request hit and whether its method is allowed there. Pure: no I/O.

use super::context::Route;

/// The route of `method path`, or the method the path allows.
pub fn route_of(method: &http::Method, path: &str) -> Result<Route, &'static str> {
    let (route, allow) = match path {
        "/v1/chat/completions" => (Route::ChatCompletions, "POST"),
        "/v1/messages" => (Route::Messages, "POST"),
        "/v1/messages/count_tokens" => (Route::CountTokens, "POST"),
        "/v1/completions" => (Route::Completions, "POST"),
        "/v1/responses" => (Route::Responses, "POST"),
        "/v1/embeddings" => (Route::Embeddings, "POST"),
        "/v1/ai/infer" => (Route::Infer, "POST"),
        "/v1/models" => (Route::Models, "GET"),
        "/v1/health" => (Route::Health, "GET"),
        p if p.len() > "/v1/models/".len() && p.starts_with("/v1/models/") => (Route::Model, "GET"),
        p if p.len() > "/v1/responses/".len() && p.starts_with("/v1/responses/") => {
            (Route::StoredResponse, "GET, DELETE")
        }
        _ => return Ok(Route::Unknown),
    };
    let ok = match allow {
        "POST" => method == http::Method::POST,
        "GET, DELETE" => {
            [http::Method::GET, http::Method::HEAD, http::Method::DELETE].contains(method)
        }
        _ => method == http::Method::GET || method == http::Method::HEAD,
    };
    if ok {
        Ok(route)
    } else {
        Err(allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(
            route_of(&http::Method::POST, "/v1/chat/completions"),
            Ok(Route::ChatCompletions)
        );
        assert_eq!(
            route_of(&http::Method::POST, "/v1/ai/infer"),
            Ok(Route::Infer)
        );
        assert_eq!(
            route_of(&http::Method::GET, "/v1/chat/completions"),
            Err("POST")
        );
        assert_eq!(
            route_of(&http::Method::GET, "/v1/models"),
            Ok(Route::Models)
        );
        assert_eq!(route_of(&http::Method::POST, "/v1/models"), Err("GET"));
        assert_eq!(
            route_of(&http::Method::GET, "/v1/models/gpt-4o"),
            Ok(Route::Model)
        );
        assert_eq!(
            route_of(&http::Method::GET, "/v1/models/"),
            Ok(Route::Unknown)
        );
        assert_eq!(route_of(&http::Method::GET, "/nope"), Ok(Route::Unknown));
        assert_eq!(
            route_of(&http::Method::POST, "/v1/completions"),
            Ok(Route::Completions)
        );
        assert_eq!(
            route_of(&http::Method::POST, "/v1/messages/count_tokens"),
            Ok(Route::CountTokens)
        );
        assert_eq!(
            route_of(&http::Method::GET, "/v1/messages/count_tokens"),
            Err("POST")
        );
        assert_eq!(
            route_of(&http::Method::POST, "/v1/responses"),
            Ok(Route::Responses)
        );
        assert_eq!(
            route_of(&http::Method::DELETE, "/v1/responses/resp_1"),
            Ok(Route::StoredResponse)
        );
        assert_eq!(
            route_of(&http::Method::POST, "/v1/responses/resp_1"),
            Err("GET, DELETE")
        );
    }
}
