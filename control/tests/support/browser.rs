//! Headless Chromium for the panel's browser tests, driven through
//! chromedriver with fantoccini, and the small steps they repeat.
//! Screenshots land in `<target>/screenshots/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`
//! (`deploy/local/test.sh` installs them); without them these tests fail
//! with a message saying so.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::panel::PASSWORD;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, killed when the test ends.
pub struct Driver {
    child: Child,
    pub port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn start_driver() -> Driver {
    let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "chromedriver not found at {path}: the panel's browser tests need headless Chromium. \
         Install it with `apt-get install -y chromium chromium-driver` (deploy/local/test.sh does), \
         or set CHROMEDRIVER to its path."
    );
    let port = free_port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {path}: {error}"));
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver
}

pub async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,900"] }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session from chromedriver")
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

/// The element, once the page has it: a click's navigation is not awaited
/// by WebDriver.
pub async fn find(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css}: {error}"))
}

/// The element's text. A live page may replace the element between the
/// find and the read (a stale reference): then it is found again.
pub async fn text(browser: &Client, css: &str) -> String {
    for _ in 0..20 {
        match find(browser, css).await.text().await {
            Ok(text) => return text,
            Err(fantoccini::error::CmdError::Standard(error))
                if error.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
            Err(error) => panic!("{css}: {error}"),
        }
    }
    panic!("{css}: replaced 20 times while being read")
}

pub async fn fill(browser: &Client, css: &str, value: &str) {
    find(browser, css).await.send_keys(value).await.unwrap();
}

pub async fn click(browser: &Client, css: &str) {
    find(browser, css).await.click().await.unwrap();
}

pub async fn path(browser: &Client) -> String {
    browser.current_url().await.unwrap().path().to_owned()
}

/// Waits for the browser to arrive at `expected`.
pub async fn arrives(browser: &Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = path(browser).await;
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "at {now}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn log_in(browser: &Client, base: &str, username: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    fill(browser, "#username", username).await;
    fill(browser, "#password", PASSWORD).await;
    click(browser, "#login-submit").await;
}

/// Polls `check` for up to `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
