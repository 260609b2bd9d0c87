//! Panel sessions: a random cookie whose BLAKE3 hash keys `admin_sessions`,
//! loaded once per request by [`load`], and the extractors handlers take.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use uuid::Uuid;

use super::error::PanelError;
use crate::context::client_context;
use crate::context::{Actor, ActorKind, RequestContext};
use crate::db::admin_sessions::{self, LiveSession};
use crate::db::admins::Role;
use crate::panel::PanelState;

/// Requests under this prefix do not restart the idle clock: an open
/// dashboard tab streaming numbers is not someone using the panel.
pub const PASSIVE_PREFIX: &str = "/events/";

/// The session named by the request's cookie, if live; put in the
/// request's extensions by [`load`].
#[derive(Debug, Clone)]
pub struct CurrentSession(pub Option<Arc<LiveSession>>);

/// Anyone logged in with every factor they have.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: Arc<LiveSession>,
    pub role: Role,
    /// For audit rows: this admin, this request.
    pub ctx: RequestContext,
}

/// A logged-in admin with the `admin` role.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Viewer);

/// 256 random bits, URL-safe: session cookies and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_token(token: &str) -> Vec<u8> {
    blake3::hash(token.as_bytes()).as_bytes().to_vec()
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The panel's cookies. When `Secure`, their names carry the `__Host-`
/// prefix: a browser then takes them only from a secure origin, for path
/// `/` and no domain, so a sibling subdomain cannot plant or overwrite one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookies {
    pub secure: bool,
}

impl Cookies {
    /// The session cookie.
    pub fn session(self) -> &'static str {
        if self.secure {
            "__Host-lk_session"
        } else {
            "lk_session"
        }
    }

    /// The login form's double-submit cookie.
    pub fn login_csrf(self) -> &'static str {
        if self.secure {
            "__Host-lk_login_csrf"
        } else {
            "lk_login_csrf"
        }
    }

    /// A `Set-Cookie`: HttpOnly, SameSite=Strict, path `/`, `Secure` when
    /// so configured. `max_age_secs` 0 deletes it.
    pub fn set(self, name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("lk_invalid=; Max-Age=0"))
    }
}

/// Finds the live session named by the cookie and puts it in the request.
pub async fn load(State(state): State<PanelState>, mut request: Request, next: Next) -> Response {
    let touch = !request.uri().path().starts_with(PASSIVE_PREFIX);
    let session = match cookie(request.headers(), state.cookies().session()) {
        Some(token) => {
            match admin_sessions::find_live(
                &state.pool,
                &hash_token(token),
                state.config.idle_timeout_secs,
                touch,
            )
            .await
            {
                Ok(found) => found.map(Arc::new),
                Err(error) => return PanelError::from(error).into_response(),
            }
        }
        None => None,
    };
    request.extensions_mut().insert(CurrentSession(session));
    next.run(request).await
}

/// Whether the session is still live, without restarting its idle clock:
/// what an event stream asks before each event, so it ends with the session.
pub async fn still_live(state: &PanelState, id_hash: &[u8]) -> bool {
    let live =
        admin_sessions::find_live(&state.pool, id_hash, state.config.idle_timeout_secs, false)
            .await;
    matches!(live, Ok(Some(_)))
}

impl Viewer {
    pub fn admin_id(&self) -> Uuid {
        self.session.admin_id
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl FromRequestParts<PanelState> for Viewer {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, _: &PanelState) -> Result<Self, PanelError> {
        let session = parts
            .extensions
            .get::<CurrentSession>()
            .and_then(|current| current.0.clone())
            .ok_or(PanelError::LoginRequired)?;
        if !session.mfa_passed {
            return Err(PanelError::SecondFactorRequired);
        }
        let role = session.role.parse()?;
        let mut ctx = client_context(parts);
        ctx.actor = Actor {
            kind: ActorKind::Admin,
            id: Some(session.admin_id.to_string()),
            name: Some(session.username.clone()),
        };
        Ok(Self { session, role, ctx })
    }
}

impl FromRequestParts<PanelState> for AdminUser {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, state: &PanelState) -> Result<Self, PanelError> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if !viewer.is_admin() {
            return Err(PanelError::Forbidden);
        }
        Ok(Self(viewer))
    }
}
