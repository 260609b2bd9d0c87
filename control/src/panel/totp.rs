//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of
//! skew) with `totp-rs`; enrolment shows a QR code (SVG drawn here with
//! `qrcodegen`) and the secret, and a first code confirms it. Confirming
//! creates ten single-use recovery codes, shown once and stored as argon2id
//! hashes.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use qrcodegen::{QrCode, QrCodeEcc};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use totp_rs::{Builder, Secret, Totp};

use super::error::{PanelError, PanelResult};
use super::form::Form;
use super::pages::Layout;
use super::session::Viewer;
use crate::db::admins::{self, AdminAccount};
use crate::panel::PanelState;

const ISSUER: &str = "Latchkey";
pub const RECOVERY_CODES: usize = 10;
/// No 0/o, 1/l/i: codes are read off paper.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// Symbols in a recovery code, shown as two groups of five.
const RECOVERY_CODE_LEN: usize = 10;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "totp_enrol.html")]
pub struct EnrolPage {
    layout: Layout,
    enabled: bool,
    qr_data_url: String,
    secret: String,
    error: Option<String>,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage {
    layout: Layout,
    codes: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    code: String,
}

/// Starts (or restarts) enrolment with a fresh secret.
pub async fn enrol_page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<Response> {
    let account = account(&state, &viewer).await?;
    if account.totp_enabled_at.is_some() {
        return Ok(EnrolPage {
            layout: Layout::new(&viewer, "Two-factor login", "/settings"),
            enabled: true,
            qr_data_url: String::new(),
            secret: String::new(),
            error: None,
        }
        .into_response());
    }
    let secret = Secret::generate();
    admins::begin_totp(
        &state.pool,
        account.id,
        &state.secrets.seal(secret.as_ref()),
    )
    .await?;
    enrol_form(&viewer, &account, secret.as_ref().to_vec(), None)
}

pub async fn confirm(
    viewer: Viewer,
    State(state): State<PanelState>,
    Form(form): Form<ConfirmForm>,
) -> PanelResult<Response> {
    let account = account(&state, &viewer).await?;
    if account.totp_enabled_at.is_some() {
        return Err(PanelError::Invalid(
            "two-factor login is already enabled".into(),
        ));
    }
    let secret = open_secret(&state, &account)?;
    let code = form.code.trim();
    if totp(secret.clone(), &account.username)?
        .check_current(code)
        .is_none()
    {
        return enrol_form(
            &viewer,
            &account,
            secret,
            Some(
                "That code does not match: check the clock of your device and try the next one."
                    .into(),
            ),
        );
    }
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
    let hashes = codes
        .iter()
        .map(|code| admins::hash_password(&normalise_recovery_code(code)))
        .collect::<Result<Vec<_>, _>>()?;
    admins::enable_totp(&state.pool, &viewer.ctx, account.id, &hashes).await?;
    Ok(RecoveryCodesPage {
        layout: Layout::new(&viewer, "Recovery codes", "/settings"),
        codes,
    }
    .into_response())
}

/// The step `code` matches for this admin's confirmed secret, if any.
pub fn matching_step(
    state: &PanelState,
    account: &AdminAccount,
    code: &str,
) -> PanelResult<Option<u64>> {
    if account.totp_enabled_at.is_none() {
        return Ok(None);
    }
    let secret = open_secret(state, account)?;
    Ok(totp(secret, &account.username)?.check_current(code))
}

/// A recovery code as typed, normalised, when it has a recovery code's
/// length and alphabet; anything else is not worth an argon2 check.
pub fn recovery_code_shape(typed: &str) -> Option<String> {
    let code = normalise_recovery_code(typed);
    (code.len() == RECOVERY_CODE_LEN && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
        .then_some(code)
}

/// Lower case without separators: how recovery codes are hashed and compared.
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn enrol_form(
    viewer: &Viewer,
    account: &AdminAccount,
    secret: Vec<u8>,
    error: Option<String>,
) -> PanelResult<Response> {
    let totp = totp(secret, &account.username)?;
    let url = totp
        .to_url()
        .map_err(|error| PanelError::Internal(format!("otpauth URL: {error}")))?;
    Ok(EnrolPage {
        layout: Layout::new(viewer, "Two-factor login", "/settings"),
        enabled: false,
        qr_data_url: qr_svg_data_url(&url)?,
        secret: totp.secret().to_base32(),
        error,
    }
    .into_response())
}

async fn account(state: &PanelState, viewer: &Viewer) -> PanelResult<AdminAccount> {
    admins::find(&state.pool, viewer.admin_id())
        .await?
        .ok_or(PanelError::LoginRequired)
}

fn open_secret(state: &PanelState, account: &AdminAccount) -> PanelResult<Vec<u8>> {
    let sealed = account
        .totp_secret
        .as_deref()
        .ok_or_else(|| PanelError::Invalid("no enrolment in progress: start again".into()))?;
    state
        .secrets
        .open(sealed)
        .map_err(|error| PanelError::Internal(format!("opening a TOTP secret: {error}")))
}

fn totp(secret: Vec<u8>, username: &str) -> PanelResult<Totp> {
    Builder::new()
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(username)
        .build()
        .map_err(|error| PanelError::Internal(format!("TOTP: {error}")))
}

fn recovery_code() -> String {
    let mut bytes = [0u8; RECOVERY_CODE_LEN];
    OsRng.fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// The otpauth URL as a QR code in an SVG `data:` URL: no request leaves
/// the browser, and no image library is linked for it.
fn qr_svg_data_url(text: &str) -> PanelResult<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium)
        .map_err(|error| PanelError::Internal(format!("QR code: {error}")))?;
    let border = 4;
    let size = qr.size() + 2 * border;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    );
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_distinct_and_normalise() {
        let codes: std::collections::HashSet<String> =
            (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 11);
            assert_eq!(normalise_recovery_code(&code.to_uppercase()).len(), 10);
        }
    }

    #[test]
    fn codes_from_the_secret_verify_once_generated() {
        let secret = Secret::generate();
        let totp = totp(secret.as_ref().to_vec(), "alice").unwrap();
        let code = totp.generate_current().to_string();
        assert!(totp.check_current(&code).is_some());
        assert!(totp.check_current("000000").is_none() || code == "000000");
        assert!(
            qr_svg_data_url(&totp.to_url().unwrap())
                .unwrap()
                .starts_with("data:image/svg+xml;base64,")
        );
    }
}
