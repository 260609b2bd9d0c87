//! Login (password, then the second factor when enrolled) and logout.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::assets;
use super::error::{PanelError, PanelResult};
use super::form::Form;
use super::guard::Admission;
use super::session::{CurrentSession, Viewer, hash_token, random_token};
use super::totp;
use crate::context::client_context;
use crate::context::{Actor, ActorKind, RequestContext};
use crate::db::admin_sessions::{self, NewSession};
use crate::db::admins::{self, AdminAccount};
use crate::panel::PanelState;

/// Checked when the username is unknown, so that an unknown name costs what
/// a wrong password does and the timing tells nothing.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| admins::hash_password("latchkey-timing-equaliser").unwrap_or_default());

#[derive(Debug, Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    assets: &'static str,
    csrf: String,
    error: Option<String>,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "login_2fa.html")]
pub struct SecondFactorPage {
    assets: &'static str,
    csrf: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    code: String,
}

pub async fn login_page(State(state): State<PanelState>, parts: Parts) -> Response {
    if current(&parts).is_some_and(|session| session.mfa_passed) {
        return Redirect::to("/").into_response();
    }
    login_form(&state, &parts.headers, None, StatusCode::OK)
}

/// The login page, with the double-submit cookie its form posts back.
fn login_form(
    state: &PanelState,
    headers: &HeaderMap,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let cookies = state.cookies();
    let existing = super::session::cookie(headers, cookies.login_csrf()).map(str::to_owned);
    let csrf = existing.clone().unwrap_or_else(random_token);
    let page = LoginPage {
        assets: assets::version(),
        csrf: csrf.clone(),
        error,
    };
    let mut response = (status, page).into_response();
    if existing.is_none() {
        let cookie = cookies.set(
            cookies.login_csrf(),
            &csrf,
            state.config.absolute_timeout_secs,
        );
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn login(
    State(state): State<PanelState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> PanelResult<Response> {
    let mut ctx = client_context(&parts);
    let ip = client_ip(&ctx);
    let guard = &state.guard;
    let admission = guard.admit(&state.pool, ip, &form.username).await?;
    let account = match admins::find_by_username(&state.pool, &form.username).await? {
        Some(account) => Some(account).filter(|account| password_matches(account, &form.password)),
        None => {
            admins::verify_password(&form.password, &DUMMY_HASH);
            None
        }
    };
    if let Admission::Slowed { retry_after_secs } = admission {
        // A slowed account's owner with a second factor still gets to it;
        // anyone else waits, and the attempt is not counted.
        if account.as_ref().is_none_or(|a| a.totp_enabled_at.is_none()) {
            return Ok(login_form(
                &state,
                &parts.headers,
                Some(format!(
                    "This account had many failed logins: try again in {retry_after_secs} s."
                )),
                StatusCode::TOO_MANY_REQUESTS,
            ));
        }
    }
    let Some(account) = account else {
        // An automatic block's audit row names the guard, not a person.
        ctx.actor = Actor::system("login-guard");
        let blocked = guard
            .failed(&state.pool, &ctx, ip, &form.username, "bad_credentials")
            .await?;
        return Ok(login_form(
            &state,
            &parts.headers,
            Some(failure_message("Wrong username or password.", blocked)),
            StatusCode::UNAUTHORIZED,
        ));
    };
    let needs_code = account.totp_enabled_at.is_some();
    if needs_code {
        guard
            .password_passed(&state.pool, ip, &account.username)
            .await?;
    } else {
        guard.succeeded(&state.pool, ip, &account.username).await?;
    }
    ctx.actor = Actor {
        kind: ActorKind::Admin,
        id: Some(account.id.to_string()),
        name: Some(account.username.clone()),
    };
    let token = random_token();
    admin_sessions::create(
        &state.pool,
        &ctx,
        NewSession {
            id_hash: &hash_token(&token),
            admin_id: account.id,
            csrf_token: &random_token(),
            mfa_passed: !needs_code,
            ip: ctx.ip,
            user_agent: ctx.user_agent.as_deref(),
            absolute_timeout_secs: state.config.absolute_timeout_secs,
        },
    )
    .await?;
    admins::record_login(&state.pool, account.id).await?;
    let target = if needs_code { "/login/2fa" } else { "/" };
    let mut response = Redirect::to(target).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookies().set(
            state.cookies().session(),
            &token,
            state.config.absolute_timeout_secs,
        ),
    );
    Ok(response)
}

/// The failure that reaches the limit says so: the next attempt is refused.
fn failure_message(failure: &str, blocked: bool) -> String {
    if blocked {
        format!(
            "{failure} Too many failed attempts: logins from your address are blocked for a while."
        )
    } else {
        failure.to_owned()
    }
}

fn password_matches(account: &AdminAccount, password: &str) -> bool {
    account.disabled_at.is_none() && admins::verify_password(password, &account.password_hash)
}

pub async fn second_factor_page(parts: Parts) -> PanelResult<Response> {
    let session = current(&parts).ok_or(PanelError::LoginRequired)?;
    if session.mfa_passed {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(SecondFactorPage {
        assets: assets::version(),
        csrf: session.csrf_token.clone(),
        error: None,
    }
    .into_response())
}

/// A six-digit code from the authenticator, or one of the recovery codes.
pub async fn second_factor(
    State(state): State<PanelState>,
    parts: Parts,
    Form(form): Form<CodeForm>,
) -> PanelResult<Response> {
    let session = current(&parts).ok_or(PanelError::LoginRequired)?;
    if session.mfa_passed {
        return Ok(Redirect::to("/").into_response());
    }
    let mut ctx = client_context(&parts);
    let ip = client_ip(&ctx);
    let guard = &state.guard;
    // Slowing applies to passwords; codes are capped per account instead.
    guard.admit_network(&state.pool, ip).await?;
    let account = admins::find(&state.pool, session.admin_id)
        .await?
        .ok_or(PanelError::LoginRequired)?;
    ctx.actor = Actor {
        kind: ActorKind::Admin,
        id: Some(account.id.to_string()),
        name: Some(account.username.clone()),
    };
    if !guard.second_factor_allowed(&account.username).await? {
        return end_pre_second_factor(&state, &ctx, &session, &parts.headers).await;
    }
    let code: String = form.code.chars().filter(|c| !c.is_whitespace()).collect();
    let method = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        match totp::matching_step(&state, &account, &code)? {
            Some(step) if admins::claim_totp_step(&state.pool, account.id, step).await? => {
                Some("totp")
            }
            _ => None,
        }
    } else if let Some(recovery) = totp::recovery_code_shape(&code) {
        admins::use_recovery_code(&state.pool, account.id, &recovery)
            .await?
            .then_some("recovery_code")
    } else {
        // Neither shape: no argon2 check is spent on it, but it counts.
        None
    };
    let Some(method) = method else {
        let (blocked, exhausted) = guard
            .second_factor_failed(&state.pool, &ctx, ip, &account.username)
            .await?;
        if exhausted {
            return end_pre_second_factor(&state, &ctx, &session, &parts.headers).await;
        }
        let page = SecondFactorPage {
            assets: assets::version(),
            csrf: session.csrf_token.clone(),
            error: Some(failure_message("That code is not valid.", blocked)),
        };
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    guard.succeeded(&state.pool, ip, &account.username).await?;
    let token = random_token();
    admin_sessions::pass_second_factor(
        &state.pool,
        &ctx,
        &session.id_hash,
        &hash_token(&token),
        account.id,
        method,
    )
    .await?;
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookies().set(
            state.cookies().session(),
            &token,
            state.config.absolute_timeout_secs,
        ),
    );
    Ok(response)
}

/// Too many wrong codes for the account: the half-logged-in session ends,
/// and the login page says why.
async fn end_pre_second_factor(
    state: &PanelState,
    ctx: &RequestContext,
    session: &admin_sessions::LiveSession,
    headers: &HeaderMap,
) -> PanelResult<Response> {
    admin_sessions::revoke(
        &state.pool,
        ctx,
        session.admin_id,
        &session.id_hash,
        "admin_session.second_factor_exhausted",
    )
    .await?;
    let mut response = login_form(
        state,
        headers,
        Some(
            "Too many wrong codes for this account: log in again once the failure window has passed."
                .into(),
        ),
        StatusCode::TOO_MANY_REQUESTS,
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookies().set(state.cookies().session(), "", 0),
    );
    Ok(response)
}

pub async fn logout(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<Response> {
    admin_sessions::revoke(
        &state.pool,
        &viewer.ctx,
        viewer.admin_id(),
        &viewer.session.id_hash,
        "admin.logout",
    )
    .await?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookies().set(state.cookies().session(), "", 0),
    );
    Ok(response)
}

fn current(parts: &Parts) -> Option<std::sync::Arc<admin_sessions::LiveSession>> {
    parts
        .extensions
        .get::<CurrentSession>()
        .and_then(|current| current.0.clone())
}

/// The peer address; without one (only in tests without connect info) all
/// such callers share one counter.
fn client_ip(ctx: &RequestContext) -> IpAddr {
    ctx.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}
