//! What the panel's HTTP and browser tests share: admins, and a
//! cookie-keeping client that talks to the app with `oneshot`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use latchkey_control::context::RequestContext;
use latchkey_control::db::admins::{self, Role};
use latchkey_control::panel::PanelRoute;
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

pub async fn admin(pool: &PgPool, username: &str, role: Role) -> Uuid {
    admins::create(
        pool,
        &RequestContext::system("test"),
        username,
        PASSWORD,
        role,
    )
    .await
    .unwrap()
}

/// A route pattern with every `{name}` segment replaced by `value`: a path
/// to request when walking the route list.
pub fn concrete(pattern: &str, value: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    pub fn error_code(&self) -> &str {
        self.headers
            .get("x-error-code")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="_csrf"` field in the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"_csrf\" value=\"";
        let start = self.body.find(marker).expect("page has a CSRF field") + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

/// A browser without JavaScript: keeps cookies, comes from one address.
pub struct Client {
    app: Router,
    pub cookies: BTreeMap<String, String>,
    /// Sent with every request (a proxy's `X-Forwarded-For`).
    always: Vec<(String, String)>,
}

impl Client {
    pub fn new(app: Router, ip: &str) -> Self {
        let addr: SocketAddr = match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 40000),
            Err(_) => panic!("{ip:?} is not an IP address"),
        };
        Self {
            app: app.layer(MockConnectInfo(addr)),
            cookies: BTreeMap::new(),
            always: Vec::new(),
        }
    }

    /// A browser at `client` reaching the panel through the proxy at `proxy`.
    pub fn behind_proxy(app: Router, proxy: &str, client: &str) -> Self {
        let mut this = Self::new(app, proxy);
        this.always
            .push(("x-forwarded-for".into(), format!("{client}, {proxy}")));
        this
    }

    pub async fn send(
        &mut self,
        method: Method,
        uri: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Reply {
        self.send_with(method, uri, form, &[]).await
    }

    pub async fn send_with(
        &mut self,
        method: Method,
        uri: &str,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(header::COOKIE, cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        for (name, value) in &self.always {
            request = request.header(name, value);
        }
        let body = match form {
            Some(pairs) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut encoded = form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    encoded.append_pair(k, v);
                }
                Body::from(encoded.finish())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, uri: &str) -> Reply {
        self.send(Method::GET, uri, None).await
    }

    pub async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Reply {
        self.send(Method::POST, uri, Some(form)).await
    }

    /// A list's export, followed as a browser does: its answer redirects to
    /// the file when it is written, else to the job's page, looked at until
    /// the file is ready. The file's reply (or a refusal), and where it was.
    pub async fn export(&mut self, uri: &str) -> (Reply, String) {
        let mut uri = uri.to_owned();
        for _ in 0..400 {
            let reply = self.get(&uri).await;
            if reply.status == StatusCode::SEE_OTHER {
                uri = reply.location().to_owned();
            } else if uri.starts_with("/exports/") && !uri.ends_with("/file") {
                if reply.body.contains("id=\"export-ready\"") {
                    uri.push_str("/file");
                } else {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
            } else {
                return (reply, uri);
            }
        }
        panic!("the export at {uri} did not finish");
    }

    /// Sends each route (its `{name}` segments replaced by `id`) with
    /// `form`, and expects the role refusal: 403 `FORBIDDEN`.
    pub async fn refused_each(&mut self, routes: &[PanelRoute], id: &str, form: &[(&str, &str)]) {
        for route in routes {
            let uri = concrete(route.path, id);
            let reply = self.send(route.method.clone(), &uri, Some(form)).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{} {uri}",
                route.method
            );
            assert_eq!(reply.error_code(), "FORBIDDEN", "{} {uri}", route.method);
        }
    }

    /// Fetches the login form and posts it.
    pub async fn login(&mut self, username: &str, password: &str) -> Reply {
        let page = self.get("/login").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.csrf();
        self.post(
            "/login",
            &[
                ("_csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Logs in with the password (no 2FA enrolled) and returns the
    /// session's CSRF token.
    pub async fn logged_in(&mut self, username: &str) -> String {
        let reply = self.login(username, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        assert_eq!(reply.location(), "/");
        let home = self.get("/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        home.csrf()
    }
}

/// Enrols the admin logged in on `client` in TOTP; the code generator.
pub async fn enrol_totp(client: &mut Client) -> totp_rs::Totp {
    let enrol = client.get("/settings/2fa").await;
    let marker = "id=\"totp-secret\">";
    let from = enrol
        .body
        .find(marker)
        .expect("the enrolment page shows the secret")
        + marker.len();
    let secret = &enrol.body[from..from + enrol.body[from..].find('<').unwrap()];
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    let code = totp.generate_current().to_string();
    let done = client
        .post(
            "/settings/2fa",
            &[("_csrf", &enrol.csrf()), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    totp
}
