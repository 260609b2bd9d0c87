//! Who is calling the admin API, and what they may do.
//!
//! Every route but the token exchange and the OpenAPI document takes
//! `Authorization: Bearer <credential>`, where the credential is either an
//! API key (`lk_…`, see [`crate::db::api_keys`]) or a short-lived HS256 JWT
//! from `POST /admin/api/v1/auth/token`. Both resolve to the same
//! [`Principal`]: the key, its name and scopes. A JWT is honoured only while
//! its key is neither revoked nor expired, so revoking a key ends its tokens
//! at once (one primary-key lookup per call).
//!
//! A handler names the scope it needs in its first argument's type,
//! `Auth<Read<Licenses>>` or `Auth<Write<Flags>>`: the extractor answers 401
//! without valid credentials and 403 without the scope, before any other
//! extractor reads the request, so no handler can forget the check.
//! [`Auth::ctx`] is the [`RequestContext`] their audit rows carry.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_shared::api::ErrorCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::config::Config;
use crate::context::{Actor, ActorKind, RequestContext, client_context};
use crate::db::api_keys::{self, ApiKey, Area, Scope, Scopes};
use crate::error::DomainError;
use crate::http::ApiState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Json;
use crate::http::openapi::{BodyErrors, ErrorBody};

const ISSUER: &str = "latchkey-control";
const AUDIENCE: &str = "latchkey-admin-api";

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    pub via: Credential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    Token,
}

/// The extractor every protected handler takes: an authenticated caller
/// holding the scope `S` names.
#[derive(Debug)]
pub struct Auth<S> {
    pub principal: Principal,
    pub ctx: RequestContext,
    scope: PhantomData<S>,
}

/// A scope as a type, for [`Auth`].
pub trait Required {
    const SCOPE: Scope;
}

/// `<area>:read`.
#[derive(Debug)]
pub struct Read<A>(PhantomData<A>);

/// `<area>:write` (which implies read).
#[derive(Debug)]
pub struct Write<A>(PhantomData<A>);

/// An [`Area`] as a type.
pub trait AreaType {
    const AREA: Area;
}

impl<A: AreaType> Required for Read<A> {
    const SCOPE: Scope = Scope::read(A::AREA);
}

impl<A: AreaType> Required for Write<A> {
    const SCOPE: Scope = Scope::write(A::AREA);
}

macro_rules! area_types {
    ($($area:ident),* $(,)?) => {$(
        #[doc = concat!("[`Area::", stringify!($area), "`] as a type.")]
        #[derive(Debug)]
        pub struct $area;

        impl AreaType for $area {
            const AREA: Area = Area::$area;
        }
    )*};
}

area_types!(
    Customers, Licenses, Devices, Sessions, Resources, Products, Flags, ApiKeys, Audit, Edges,
    Leads,
);

/// HS256 keys and rules of the admin API's tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

/// What a token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    /// The API key's id.
    sub: String,
    name: String,
    scopes: Vec<String>,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A whole API key, `lk_<prefix>_<secret>`.
    pub api_key: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    pub scopes: Vec<String>,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(issue_token))
}

/// Exchanges an API key for a short-lived token carrying its id, name and scopes.
#[utoipa::path(
    post,
    path = "/auth/token",
    tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        BodyErrors,
        (status = 401, description = "Unknown, revoked or expired API key", body = ErrorBody),
        (status = 500, description = "Internal error; the request id identifies it in our logs", body = ErrorBody),
    )
)]
pub async fn issue_token(
    State(state): State<ApiState>,
    Json(request): Json<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let key = authenticate_key(&state, &request.api_key).await?;
    let (access_token, expires_at) = state.tokens.issue(&key)?;
    tracing::info!(api_key_id = %key.id, "token issued");
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: (expires_at - OffsetDateTime::now_utc())
            .whole_seconds()
            .max(0) as u64,
        expires_at,
        scopes: key.scopes,
    }))
}

/// The 403 for a scope the caller lacks.
pub fn forbidden(scope: Scope) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("this credential lacks the scope `{scope}`"),
    )
}

impl<S: Required + Send> FromRequestParts<ApiState> for Auth<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let mut ctx = client_context(parts);
        let credential = bearer(parts)?;
        let principal = if credential.starts_with("lk_") {
            let key = authenticate_key(state, credential).await?;
            Principal {
                key_id: key.id,
                name: key.name,
                scopes: stored_scopes(&key.scopes)?,
                via: Credential::ApiKey,
            }
        } else {
            state.tokens.verify(state, credential).await?
        };
        if !principal.scopes.allows(S::SCOPE) {
            return Err(forbidden(S::SCOPE));
        }
        ctx.actor = Actor {
            kind: ActorKind::ApiKey,
            id: Some(principal.key_id.to_string()),
            name: Some(principal.name.clone()),
        };
        Ok(Self {
            principal,
            ctx,
            scope: PhantomData,
        })
    }
}

fn bearer(parts: &Parts) -> ApiResult<&str> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("missing `Authorization: Bearer <API key or token>`")
        })?
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
    let (scheme, credential) = value.split_once(' ').ok_or_else(|| {
        ApiError::unauthorized("expected `Authorization: Bearer <API key or token>`")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || credential.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "expected `Authorization: Bearer <API key or token>`",
        ));
    }
    Ok(credential.trim())
}

async fn authenticate_key(state: &ApiState, presented: &str) -> ApiResult<ApiKey> {
    match api_keys::authenticate(&state.pool, &state.secrets, presented.trim()).await? {
        Ok(key) => Ok(key),
        Err(refusal) => {
            tracing::info!(reason = %refusal, "API key refused");
            Err(invalid_credentials())
        }
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid, revoked or expired credentials")
}

fn stored_scopes(texts: &[String]) -> ApiResult<Scopes> {
    Scopes::parse(texts).map_err(|(index, error)| {
        ApiError::internal(format!("stored scope {index} of an API key: {error}"))
    })
}

impl TokenKeys {
    pub fn new(config: &Config) -> Self {
        Self::from_secret(
            config.jwt_secret.expose_secret().as_bytes(),
            config.jwt_ttl_secs,
        )
    }

    pub fn from_secret(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    /// A token for `key`, expiring after the configured time or with the
    /// key, whichever comes first.
    fn issue(&self, key: &ApiKey) -> ApiResult<(String, OffsetDateTime)> {
        let now = OffsetDateTime::now_utc();
        let mut expires_at = now + time::Duration::seconds(self.ttl_secs as i64);
        if let Some(key_expiry) = key.expires_at {
            expires_at = expires_at.min(key_expiry);
        }
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: key.id.to_string(),
            name: key.name.clone(),
            scopes: key.scopes.clone(),
            iat: now.unix_timestamp(),
            exp: expires_at.unix_timestamp(),
            jti: Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| ApiError::internal(format!("signing a token: {error}")))?;
        Ok((token, expires_at))
    }

    async fn verify(&self, state: &ApiState, token: &str) -> ApiResult<Principal> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| {
                tracing::info!(reason = %error, "token refused");
                invalid_credentials()
            })?
            .claims;
        let key_id: Uuid = claims.sub.parse().map_err(|_| invalid_credentials())?;
        let key = match api_keys::get(&state.pool, key_id).await {
            Ok(key) => key,
            Err(DomainError::NotFound { .. }) => return Err(invalid_credentials()),
            Err(other) => return Err(other.into()),
        };
        if let Err(refusal) = api_keys::usable(&key, OffsetDateTime::now_utc()) {
            tracing::info!(api_key_id = %key_id, reason = %refusal, "token refused");
            return Err(invalid_credentials());
        }
        Ok(Principal {
            key_id,
            name: claims.name,
            scopes: Scopes::parse(&claims.scopes).map_err(|_| invalid_credentials())?,
            via: Credential::Token,
        })
    }
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(expires_at: Option<OffsetDateTime>) -> ApiKey {
        ApiKey {
            id: Uuid::new_v4(),
            name: "ci".into(),
            prefix: "abcdefgh".into(),
            scopes: vec!["customers:read".into()],
            created_at: OffsetDateTime::now_utc(),
            expires_at,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn tokens_carry_the_key_and_refuse_other_secrets_and_algorithms() {
        let keys = TokenKeys::from_secret(&[7; 48], 900);
        let key = key(None);
        let (token, expires_at) = keys.issue(&key).unwrap();
        let remaining = expires_at - OffsetDateTime::now_utc();
        assert!(remaining.whole_seconds() > 890 && remaining.whole_seconds() <= 900);

        let claims = jsonwebtoken::decode::<Claims>(&token, &keys.decoding, &keys.validation)
            .unwrap()
            .claims;
        assert_eq!(claims.sub, key.id.to_string());
        assert_eq!(claims.name, "ci");
        assert_eq!(claims.scopes, vec!["customers:read".to_string()]);

        let other = TokenKeys::from_secret(&[8; 48], 900);
        assert!(
            jsonwebtoken::decode::<Claims>(&token, &other.decoding, &other.validation).is_err()
        );

        let hs384 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS384), &claims, &keys.encoding).unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&hs384, &keys.decoding, &keys.validation).is_err());
    }

    #[test]
    fn a_token_never_outlives_its_key() {
        let keys = TokenKeys::from_secret(&[7; 48], 900);
        let soon = OffsetDateTime::now_utc() + time::Duration::seconds(60);
        let (_, expires_at) = keys.issue(&key(Some(soon))).unwrap();
        assert_eq!(expires_at, soon);
    }
}
