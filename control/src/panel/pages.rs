//! The layout every logged-in page shares (navigation, CSRF token for htmx,
//! asset URLs) and the areas later issues fill, which say so for now.

use time::OffsetDateTime;
use time::macros::format_description;

use super::assets;
use super::session::Viewer;

/// Every area of the panel, in navigation order: `(path, label)`.
pub const NAVIGATION: [(&str, &str); 12] = [
    ("/", "Dashboard"),
    ("/customers", "Customers"),
    ("/licenses", "Licenses"),
    ("/sessions", "Sessions"),
    ("/resources", "Resources"),
    ("/products", "Products"),
    ("/leads", "Leads"),
    ("/monitoring", "Monitoring"),
    ("/backups", "Backups"),
    ("/import", "Import"),
    ("/audit", "Audit"),
    ("/settings", "Settings"),
];

#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

/// What `layout.html` needs from every page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: &'static str,
    pub username: String,
    pub role: &'static str,
    pub is_admin: bool,
    pub csrf: String,
    pub assets: &'static str,
    pub nav: Vec<NavItem>,
    /// The admin has not turned on two-factor login: every page says so.
    pub without_2fa: bool,
}

impl Layout {
    /// `active` is the navigation path this page belongs to.
    pub fn new(viewer: &Viewer, title: &'static str, active: &str) -> Self {
        Self {
            title,
            username: viewer.session.username.clone(),
            role: viewer.role.as_str(),
            is_admin: viewer.is_admin(),
            csrf: viewer.session.csrf_token.clone(),
            assets: assets::version(),
            nav: NAVIGATION
                .iter()
                .map(|&(href, label)| NavItem {
                    href,
                    label,
                    active: href == active,
                })
                .collect(),
            without_2fa: !viewer.session.totp_enabled,
        }
    }
}

/// A time as pages show it: to the second, in UTC.
pub fn when(at: &OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default()
}
