//! Application versions, compared by semver rules.
//!
//! Applications report versions loosely (`v2.1`, `3`, ` 1.4.0-beta.2 `):
//! [`parse_version`] accepts a leading `v` and missing minor or patch
//! numbers, then hands the rest to `semver`, so pre-releases sort before
//! their release (`2.0.0-rc.1 < 2.0.0`).

use std::borrow::Cow;

use semver::Version;

use crate::api::VersionCheckResponse;
use crate::snapshot::Product;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a version: {reason}")]
pub struct VersionError {
    pub text: String,
    pub reason: String,
}

/// What a version check tells an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionStatus {
    pub update_available: bool,
    /// Below the minimum allowed version.
    pub update_mandatory: bool,
}

pub fn parse_version(text: &str) -> Result<Version, VersionError> {
    let error = |reason: &str| VersionError {
        text: text.chars().take(64).collect(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.len() > 128 {
        return Err(error("longer than 128 characters"));
    }
    let bare = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    let split = bare.find(['-', '+']).unwrap_or(bare.len());
    let (core, suffix) = bare.split_at(split);
    // Borrowed when complete (the common case): no copy per verify.
    let padded: Cow<'_, str> = match core.matches('.').count() {
        0 => format!("{core}.0.0{suffix}").into(),
        1 => format!("{core}.0{suffix}").into(),
        _ => bare.into(),
    };
    Version::parse(&padded).map_err(|e| error(&e.to_string()))
}

/// Whether `current` may run, and whether a newer release exists.
pub fn check(
    current: &str,
    latest: Option<&str>,
    minimum: Option<&str>,
) -> Result<VersionStatus, VersionError> {
    check_parsed(&parse_version(current)?, latest, minimum)
}

/// [`check`] of a version parsed already.
pub fn check_parsed(
    current: &Version,
    latest: Option<&str>,
    minimum: Option<&str>,
) -> Result<VersionStatus, VersionError> {
    let update_available = latest
        .map(parse_version)
        .transpose()?
        .is_some_and(|l| l > *current);
    let update_mandatory = minimum
        .map(parse_version)
        .transpose()?
        .is_some_and(|m| *current < m);
    Ok(VersionStatus {
        update_available,
        update_mandatory,
    })
}

/// The version check's answer for `product` as a snapshot carries it: the
/// newest release of `channel` and the product's minimum allowed version.
/// The one rule: edges answer it from their snapshot, control (admin API,
/// the panel's preview) from the record its next snapshot carries.
pub fn answer(
    product: &Product,
    current: &Version,
    channel: &str,
) -> Result<VersionCheckResponse, VersionError> {
    let release = product.channels.iter().find(|c| c.channel == channel);
    let minimum = product.min_allowed_version.as_deref();
    let status = check_parsed(current, release.map(|r| r.version.as_str()), minimum)?;
    Ok(VersionCheckResponse {
        product: product.slug.clone(),
        channel: channel.to_owned(),
        current: current.to_string(),
        latest: release.map(|r| r.version.clone()),
        update_available: status.update_available,
        update_mandatory: status.update_mandatory,
        minimum_allowed: product.min_allowed_version.clone(),
        download_url: release.and_then(|r| r.download_url.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_versions_parse() {
        assert_eq!(parse_version("v2.1").unwrap(), Version::new(2, 1, 0));
        assert_eq!(parse_version(" 3 ").unwrap(), Version::new(3, 0, 0));
        assert_eq!(
            parse_version("1.4-beta.2").unwrap().to_string(),
            "1.4.0-beta.2"
        );
        assert!(parse_version("banana").is_err());
    }

    #[test]
    fn prereleases_sort_before_their_release() {
        let status = check("2.0.0-rc.1", Some("2.0.0"), Some("2.0.0")).unwrap();
        assert_eq!(
            status,
            VersionStatus {
                update_available: true,
                update_mandatory: true
            }
        );
        let status = check("2.0.1", Some("2.0.0"), Some("1.9")).unwrap();
        assert_eq!(
            status,
            VersionStatus {
                update_available: false,
                update_mandatory: false
            }
        );
    }
}
