//! A small HTTP client for the merchant API: SigV4-signed as a merchant's backend signs its
//! requests, every answer checked against `openapi.yaml`.

/// A small HTTP client for tests: JSON in, status and JSON out.
///
/// Requests to the merchant API (see [`Http::for_api`]) are SigV4-signed as a merchant's backend
/// signs them, and every answer is checked against `openapi.yaml`: an answer outside the
/// contract fails the test.
#[derive(Clone)]
pub struct Http {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    api: Option<std::sync::Arc<ApiCaller>>,
}

/// The merchant API's base URL and the credentials its requests are signed with.
#[derive(Debug)]
struct ApiCaller {
    base_url: String,
    credentials: crate::api_auth::Credentials,
}

/// An answer: status, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Http {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Http { client, api: None }
    }

    /// This client, signing its requests to the merchant API at `base_url` with `credentials`
    /// and checking every answer from it against `openapi.yaml`.
    pub fn for_api(mut self, base_url: &str, credentials: crate::api_auth::Credentials) -> Http {
        self.api = Some(std::sync::Arc::new(ApiCaller {
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
        }));
        self
    }

    /// Sends without signing, even to the merchant API (what an unauthenticated caller does).
    pub async fn send_unsigned(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: impl Into<String>,
    ) -> Answer {
        let unsigned = Http {
            client: self.client.clone(),
            api: None,
        };
        unsigned.send(method, url, content_type, body).await
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: impl Into<String>,
    ) -> Answer {
        use http_body_util::BodyExt as _;
        let body = bytes::Bytes::from(body.into());
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", content_type)
            .body(http_body_util::Full::new(body.clone()))
            .expect("request");
        let api = self
            .api
            .as_deref()
            .filter(|api| url.starts_with(&api.base_url));
        if let Some(api) = api {
            if let Some(authority) = request.uri().authority().cloned() {
                let host = axum::http::HeaderValue::from_str(authority.as_str()).expect("host");
                request.headers_mut().insert("host", host);
            }
            crate::api_auth::sign_request(
                &mut request,
                &body,
                &api.credentials,
                std::time::SystemTime::now(),
            )
            .expect("sign");
        }
        let path = request.uri().path().to_owned();
        let response = self
            .client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let answer = Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        };
        if api.is_some()
            && let Err(problem) = crate::contract::check_answer(
                method,
                &path,
                answer.status,
                &answer.headers,
                &answer.text,
            )
        {
            panic!("outside the contract (openapi.yaml): {problem}");
        }
        answer
    }

    pub async fn get(&self, url: &str) -> Answer {
        self.send("GET", url, "text/plain", "").await
    }

    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> Answer {
        self.send("POST", url, "application/json", body.to_string())
            .await
    }

    pub async fn post_form(&self, url: &str, body: &str) -> Answer {
        self.send(
            "POST",
            url,
            "application/x-www-form-urlencoded; charset=utf-8",
            body,
        )
        .await
    }
}

/// Polls `check` every 25 ms until it returns `Some`, for at most `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if let Some(value) = check().await {
            return Some(value);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    None
}
