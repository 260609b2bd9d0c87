//! The admin JSON API without a socket: requests go straight to
//! `app::router(state)` with `oneshot`, as a key holding every scope unless a
//! test says otherwise.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use latchkey_control::app::{self, AppState};
use latchkey_control::db::api_keys::{self, Scope};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

use super::config;

pub const V1: &str = "/admin/api/v1";

pub struct Api {
    pub app: Router,
    pub state: AppState,
    pub pool: PgPool,
    /// A key with every scope.
    pub admin: String,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// An audit row as the tests look at it.
#[derive(Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub action: String,
    pub entity_kind: String,
    pub entity_id: Option<String>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub host: Option<String>,
    pub user_agent: Option<String>,
}

impl Api {
    pub async fn new(pool: PgPool) -> Self {
        Self::with_state(AppState::new(pool, &config(&[])).unwrap()).await
    }

    pub async fn with_state(state: AppState) -> Self {
        let pool = state.api.pool.clone();
        let admin = api_keys::create_bootstrap(&pool, &state.api.secrets, "admin", &[Scope::All])
            .await
            .unwrap()
            .secret;
        Self {
            app: app::router(state.clone()),
            state,
            pool,
            admin,
        }
    }

    /// As if served with `into_make_service_with_connect_info`.
    pub fn with_client_address(mut self) -> Self {
        self.app = self.app.layer(MockConnectInfo(SocketAddr::from((
            [203, 0, 113, 7],
            40_000,
        ))));
        self
    }

    /// A key minted without HTTP, as an operator's first key would be.
    pub async fn key(&self, scopes: &[Scope]) -> String {
        api_keys::create_bootstrap(&self.pool, &self.state.api.secrets, "test", scopes)
            .await
            .unwrap()
            .secret
    }

    /// The answer as bytes, for bodies that are not JSON.
    pub async fn bytes(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
            .await
            .unwrap();
        assert!(
            headers.contains_key("x-request-id"),
            "every answer carries x-request-id: {status}"
        );
        (status, headers, bytes)
    }

    /// The answer, whose body must be JSON or empty.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let (status, headers, bytes) = self.bytes(request).await;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                panic!("not JSON ({error}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call_as(
        &self,
        bearer: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        self.request(Some(bearer), method, uri, body).await
    }

    /// Without credentials.
    pub async fn anonymous(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.request(None, method, uri, body).await
    }

    /// As the key with every scope.
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.request(Some(&self.admin), method, uri, body).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    /// A body sent as given, under any content type or none.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        bearer: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    /// The audit rows written under a request id.
    pub async fn audit(&self, request_id: &str) -> Vec<AuditRow> {
        sqlx::query_as(
            "SELECT action, entity_kind, entity_id, actor_kind, actor_id, before, after, host(ip), user_agent
             FROM audit_log WHERE request_id = $1 ORDER BY id",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn product(&self, slug: &str) -> i64 {
        let created = self
            .post(
                &format!("{V1}/products"),
                json!({ "slug": slug, "name": "Studio" }),
            )
            .await;
        created.ok(StatusCode::CREATED)["id"].as_i64().unwrap()
    }

    /// One license of a new product; answers its id and key.
    pub async fn license(&self, template: Value) -> (String, String) {
        let product_id = self.product("studio").await;
        let mut body = json!({ "product_id": product_id });
        body.as_object_mut()
            .unwrap()
            .extend(template.as_object().unwrap().clone());
        let created = self.post(&format!("{V1}/licenses"), body).await;
        let license = &created.ok(StatusCode::CREATED)["items"][0];
        (
            license["id"].as_str().unwrap().to_owned(),
            license["license_key"].as_str().unwrap().to_owned(),
        )
    }

    async fn request(
        &self,
        bearer: Option<&str>,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(credential) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {credential}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }
}

impl Reply {
    pub fn request_id(&self) -> &str {
        self.headers["x-request-id"].to_str().unwrap()
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn field(&self) -> Option<&str> {
        self.body["field"].as_str()
    }

    #[track_caller]
    pub fn ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        &self.body
    }

    /// An `ErrorBody` with this status, code and field.
    #[track_caller]
    pub fn expect(&self, status: StatusCode, code: &str, field: Option<&str>) {
        assert_eq!(
            (self.status, self.code(), self.field()),
            (status, code, field),
            "{}",
            self.body
        );
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.body["retryable"].is_boolean());
    }
}
